"""Run a paper's claim test: arms × paired seeds → a validated result record.

A paper declares an :class:`Experiment` per preset: its arms (named configurations), a
function that trains and evaluates one (arm, seed), and the comparisons that decide the
claim. :func:`run_experiment` does the rest: a run folder per (arm, seed) with
checkpoints (``--resume`` continues an interrupted comparison where it stopped), the
record (setting, versions, git commit, config hash, wall time), the verdicts, the
training-curve plot and the summary table. Only the main process writes files.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from shared.data.sources import clear_sources, sources_used
from shared.distributed import get_world_size, is_main_process
from shared.engine import PRECISIONS
from shared.registry import PaperCard
from shared.results import (
    DEFAULT_MIN_GAIN,
    SCHEMA_VERSION,
    RecordError,
    check_margin,
    floor_list,
    judge,
    margin_note,
    mean_std,
    paired_verdict,
    read_record,
    write_record,
)

UNTRAINED = "untrained"
"""The name of the floor arm: the baseline's architecture at its seed's initialisation (or the
pretrained start of a fine-tuning paper), scored by the same evaluation, never trained."""


@dataclass(frozen=True)
class Comparison:
    """``method`` beats ``baseline`` on ``metric`` in ``direction`` ("greater"/"less").

    ``headline=True`` marks a part of the paper's claim: the record's verdict is the
    conjunction of its headline comparisons (when none is marked, the first one is).
    ``margin`` > 0 makes it a non-inferiority comparison ("the method is not worse than the
    baseline by more than ``margin``", in the metric's units): the interval of the difference in
    ``direction`` is judged against −margin instead of 0 (``shared.results``).
    """

    label: str
    baseline: str
    method: str
    metric: str
    direction: str = "greater"
    headline: bool = False
    margin: float = 0.0

    def __post_init__(self) -> None:
        check_margin(self.margin)


def untrained_arm(config: dict[str, Any]) -> dict[str, Any]:
    """The floor arm of a preset: ``config`` (the baseline's) evaluated at initialisation.

    ``TrainConfig.from_arm`` turns ``untrained=True`` into zero epochs (whatever ``--epochs``
    says), so ``fit`` only evaluates; a paper whose training is not one ``fit`` call checks
    the flag itself.
    """
    return {**config, UNTRAINED: True}


def with_floor(arms: dict[str, dict[str, Any]], baseline: str) -> dict[str, dict[str, Any]]:
    """``arms`` with the floor arm first: ``untrained``, the arm ``baseline`` (the headline's baseline)
    at its seed's initialisation, scored by the same evaluation."""
    return {UNTRAINED: untrained_arm(arms[baseline]), **arms}


def is_untrained(config: dict[str, Any]) -> bool:
    return bool(config.get(UNTRAINED, False))


@dataclass
class ArmRun:
    """What :attr:`Experiment.train_arm` gets for one (arm, seed)."""

    arm: str
    config: dict[str, Any]
    seed: int
    run_dir: Path
    resume: bool
    data_dir: str | None
    epochs: int | None
    progress: bool = True


@dataclass
class ArmResult:
    """One (arm, seed): final scalar ``metrics`` (compared across arms), the training ``curve``,
    the periodic ``evaluations``, and ``extras``: any JSON-able measurements an analysis needs
    (per-class statistics, per-layer probes, ...), kept in the run's ``final.json``."""

    metrics: dict[str, float]
    curve: list[dict] = field(default_factory=list)
    evaluations: list[dict] = field(default_factory=list)
    wall_seconds: float = 0.0
    extras: dict[str, Any] = field(default_factory=dict)


Analysis = Callable[[dict, dict[str, list[ArmResult]], Path], dict[str, Any]]
"""``analysis(record, results, out_prefix)`` → JSON-able numbers stored as ``record["analysis"]``.

Called once after every (arm, seed) has run, on the main process; it may write extra figures
named ``f"{out_prefix}_<name>.png"`` (``out_prefix`` is ``results/<package>/<preset>``)."""


@dataclass
class Experiment:
    """One preset of a paper: what is compared, on what, and how one arm is trained."""

    preset: str
    description: str
    claim: str
    arms: dict[str, dict[str, Any]]
    comparisons: list[Comparison]
    train_arm: Callable[[ArmRun], ArmResult]
    setting: dict[str, Any]
    default_seeds: int = 3
    curve_metric: str = "loss"
    eval_metric: str | None = None
    analysis: Analysis | None = None
    floor_metric: str | None = None
    floor_direction: str = "greater"
    min_gain: float = DEFAULT_MIN_GAIN
    extra_floors: list[dict[str, Any]] = field(default_factory=list)
    """Presets with several data sets: more floors, each ``{"arm", "metric", "direction",
    "min_gain", "arms": [the arms it judges]}``; the main floor judges the other arms."""

    def __post_init__(self) -> None:
        for c in self.comparisons:
            for arm in (c.baseline, c.method):
                if arm not in self.arms:
                    raise ValueError(f"comparison {c.label!r} names unknown arm {arm!r}")
        if self.comparisons and not any(c.headline for c in self.comparisons):
            self.comparisons = [replace(self.comparisons[0], headline=True), *self.comparisons[1:]]
        if self.floor_direction not in ("greater", "less"):
            raise ValueError(f"floor_direction must be 'greater' or 'less', got {self.floor_direction!r}")
        if self.min_gain < 0:
            raise ValueError(f"min_gain must be non-negative, got {self.min_gain}")

    @property
    def headline(self) -> list[Comparison]:
        return [c for c in self.comparisons if c.headline]

    def floor(self, selected: list[str]) -> dict[str, Any] | list[dict[str, Any]] | None:
        """The record's floor: the untrained arm, the metric it is judged on, and ``min_gain``
        (a list when the preset has ``extra_floors``)."""
        if UNTRAINED not in selected:
            return None
        metric = self.floor_metric or self.headline[0].metric
        main = {"arm": UNTRAINED, "metric": metric, "direction": self.floor_direction, "min_gain": self.min_gain}
        extra = [f for f in self.extra_floors if f["arm"] in selected]
        return [main, *extra] if extra else main


def config_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


class DirtyTreeError(ValueError):
    """``repro run`` of a cpu/paper preset on uncommitted or untracked code."""


SCRATCH_PRESETS = ("smoke",)
"""The only presets whose records may come from uncommitted code: every other record is published
(``cpu``, ``paper``, ``cpu-sweep``, ...) and must name a commit that contains its code."""


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["git", *args], capture_output=True, text=True, timeout=20, cwd=Path(__file__).resolve().parent
    )


def git_commit(package: str | None = None) -> tuple[str, list[str]]:
    """(HEAD's commit, the uncommitted or *untracked* paths under ``shared/`` and ``methods/<package>/``).

    ("unknown", []) outside a git checkout.
    """
    try:
        head = _git("rev-parse", "HEAD")
        if head.returncode != 0:
            return "unknown", []
        top = _git("rev-parse", "--show-toplevel").stdout.strip()
        paths = ["shared"] + ([f"methods/{package}"] if package else ["methods"])
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=all", "--", *paths],
            capture_output=True,
            text=True,
            timeout=20,
            cwd=top,
        ).stdout
        dirty = [line[3:] for line in status.splitlines() if line.strip()]
        return head.stdout.strip(), dirty
    except (OSError, subprocess.SubprocessError):
        return "unknown", []


def provenance(package: str, preset: str, allow_dirty: bool) -> str:
    """The commit a record names; refuses (:class:`DirtyTreeError`) a dirty tree for every preset but smoke."""
    commit, dirty = git_commit(package)
    if not dirty:
        return commit
    if preset not in SCRATCH_PRESETS and not allow_dirty:
        shown = ", ".join(dirty[:5]) + (f" and {len(dirty) - 5} more" if len(dirty) > 5 else "")
        raise DirtyTreeError(
            f"the code of {package} has uncommitted or untracked changes ({shown}). A {preset} record names the "
            f"commit that made it: commit your changes and rerun, or pass --allow-dirty (the record is then "
            f"stamped '{commit[:12]}-dirty' and REPRODUCTIONS.md marks it)."
        )
    return f"{commit}-dirty"


def environment() -> dict[str, str]:
    import accelerate
    import torchvision

    versions = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "accelerate": accelerate.__version__,
    }
    if torch.cuda.is_available():
        device = torch.cuda.get_device_name(0)
    else:
        device = f"cpu ({os.cpu_count()} cores, {torch.backends.cpu.get_cpu_capability()})"
    return {**versions, "device": device, "threads": str(torch.get_num_threads())}


def check_writable_dir(path: str | os.PathLike, what: str) -> Path:
    """Check, before any training, that the folder ``path`` exists and is writable or can be made.

    Creates nothing: the nearest existing folder on the way must be a writable folder.
    """
    path = Path(path)
    for parent in (path, *path.parents):
        if not parent.exists():
            continue
        if not parent.is_dir():
            raise NotADirectoryError(f"{what} {path}: {parent} is a file, not a folder; choose another path")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise PermissionError(f"{what} {path}: {parent} is not writable; choose another path")
        return path
    return path


def run_key(config: dict[str, Any], seed: int, epochs: int | None) -> str:
    """What a finished or interrupted (arm, seed) run must match to be reused by ``--resume``."""
    return config_hash({"config": config, "seed": seed, "epochs_override": epochs})


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise RecordError(
            f"{path} is unreadable ({type(exc).__name__}: {exc}); delete {path.parent} to rerun this (arm, seed), "
            f"or run without --resume"
        ) from exc


def _run_one(
    exp: Experiment,
    arm: str,
    seed: int,
    root: Path,
    resume: bool,
    data_dir: str | None,
    epochs: int | None,
    progress: bool,
) -> ArmResult:
    run_dir = root / arm / f"seed{seed}"
    final, marker = run_dir / "final.json", run_dir / "run.json"
    key = run_key(exp.arms[arm], seed, epochs)
    if resume and run_dir.exists():
        saved_key = _read_json(marker).get("run_key") if marker.exists() else None
        if saved_key != key:
            print(
                f"[{arm}, seed {seed}] the run in {run_dir} was made with other settings "
                f"({'no run.json' if saved_key is None else 'run key ' + saved_key} vs {key}): training it anew",
                flush=True,
            )
            if is_main_process():
                shutil.rmtree(run_dir)
        elif final.exists():
            saved = _read_json(final)
            if saved.get("run_key") != key:
                raise RecordError(f"{final} does not match {marker}: delete {run_dir} and rerun")
            return ArmResult(
                saved["metrics"], saved["curve"], saved["evaluations"], saved["wall_seconds"], saved.get("extras", {})
            )
    if not resume and is_main_process() and run_dir.exists():
        shutil.rmtree(run_dir)
    if is_main_process():
        run_dir.mkdir(parents=True, exist_ok=True)
        if not marker.exists():
            marker.write_text(
                json.dumps({"run_key": key, "arm": arm, "seed": seed, "config": exp.arms[arm]}, default=str)
            )
    spec = ArmRun(arm, exp.arms[arm], seed, run_dir, resume, data_dir, epochs, progress)
    result = exp.train_arm(spec)
    if is_main_process():
        tmp = final.with_suffix(".tmp")
        tmp.write_text(json.dumps({**result.__dict__, "run_key": key}, indent=1))
        os.replace(tmp, final)
    return result


def _same_config(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def _kept_from_record(path: Path, exp: Experiment, selected: list[str], n_seeds: int) -> dict:
    """The old record's arms that ``--merge`` keeps: every arm not being run, checked unchanged."""
    if not path.exists():
        raise ValueError(f"--merge needs an existing record at {path}; run the preset without --merge first")
    old = read_record(path)
    if len(old["seeds"]) != n_seeds:
        raise ValueError(
            f"--merge: {path} has {len(old['seeds'])} seeds, this run {n_seeds}; pass --seeds {len(old['seeds'])}"
        )
    kept = [a for a in old["arms"] if a not in selected and a in exp.arms]
    for arm in kept:
        if not _same_config(old["setting"]["arms"].get(arm), exp.arms[arm]):
            raise ValueError(f"--merge: arm {arm!r} in {path} was made with other settings than the preset's; rerun it")
    return {"record": old, "arms": kept}


def _select_arms(exp: Experiment, arms: list[str] | None) -> list[str]:
    selected = list(arms) if arms else list(exp.arms)
    duplicated = sorted({a for a in selected if selected.count(a) > 1})
    if duplicated:
        raise ValueError(f"arm(s) {duplicated} named twice in --arms")
    unknown = [a for a in selected if a not in exp.arms]
    if unknown:
        raise ValueError(f"unknown arm(s) {unknown}; this preset has {list(exp.arms)}")
    floors = [UNTRAINED] + [f["arm"] for f in exp.extra_floors]
    for name in reversed(floors):  # the floors every verdict is judged against: always measured
        if name in exp.arms and name not in selected:
            selected.insert(0, name)
    return selected


def _throughput(root: Path, arms: list[str], n_seeds: int) -> dict[str, Any]:
    """Precision and training images/s per arm, from the ``run_stats.json`` files ``fit`` writes
    (several per run for papers that train in stages)."""
    precision, speed = {}, {}
    for arm in arms:
        for seed in range(n_seeds):
            stats = [json.loads(p.read_text()) for p in sorted((root / arm / f"seed{seed}").rglob("run_stats.json"))]
            stats = [st for st in stats if st.get("steps")]
            if not stats:
                continue
            precision[arm] = stats[-1]["precision"]
            seconds = sum(st["train_seconds"] for st in stats)
            speed.setdefault(arm, []).append(round(sum(st["samples"] for st in stats) / seconds, 1) if seconds else 0.0)
    return {"precision": precision, "samples_per_second": speed}


def run_experiment(
    card: PaperCard,
    exp: Experiment,
    seeds: int | None = None,
    out_dir: str | os.PathLike = "results",
    run_root: str | os.PathLike = "runs",
    resume: bool = False,
    data_dir: str | None = None,
    epochs: int | None = None,
    arms: list[str] | None = None,
    progress: bool = True,
    allow_dirty: bool = False,
    merge: bool = False,
    precision: str | None = None,
) -> dict:
    """Train every (arm, seed), write ``<out_dir>/<package>/<preset>.json``, return the record.

    ``merge``: train only ``arms`` and add them to the existing record (its other arms are kept
    when their settings equal the preset's; each arm's commit is recorded). Use it only when the
    code that trains and evaluates the kept arms is unchanged since they ran. ``precision``
    ("auto", "bf16", "fp32") overrides every arm's precision.
    """
    n_seeds = exp.default_seeds if seeds is None else seeds
    if n_seeds < 1:
        raise ValueError(f"--seeds must be at least 1, got {n_seeds}")
    if precision is not None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        exp = replace(exp, arms={a: {**c, "precision": precision} for a, c in exp.arms.items()})
    selected = _select_arms(exp, arms)
    out_path = Path(out_dir) / card.package / f"{exp.preset}.json"
    kept = _kept_from_record(out_path, exp, selected, n_seeds) if merge else None
    all_arms = selected + (kept["arms"] if kept else [])
    comparisons = [c for c in exp.comparisons if c.baseline in all_arms and c.method in all_arms]
    if not comparisons:
        raise ValueError("the selected arms make no comparison of this preset")
    if not any(c.headline for c in comparisons):
        raise ValueError(f"the selected arms leave out every headline comparison ({[c.label for c in exp.headline]})")
    commit = provenance(card.package, exp.preset, allow_dirty)  # read before any later edit of the tree
    root = Path(run_root) / card.package / exp.preset
    if is_main_process():  # fail now, not after hours of training
        check_writable_dir(out_path.parent, "--out")
        check_writable_dir(root, "--run-dir")
    start = time.perf_counter()
    clear_sources()
    results: dict[str, list[ArmResult]] = {}
    for seed in range(n_seeds):  # seed-major: an interrupted run still has complete pairs
        for arm in selected:
            print(f"[{card.package}/{exp.preset}] arm {arm}, seed {seed}", flush=True)
            results.setdefault(arm, []).append(_run_one(exp, arm, seed, root, resume, data_dir, epochs, progress))
    wall = time.perf_counter() - start
    arm_metrics = {a: {m: [r.metrics[m] for r in rs] for m in rs[0].metrics} for a, rs in results.items()}
    train_seconds = {a: [round(r.wall_seconds, 1) for r in rs] for a, rs in results.items()}
    curves = {a: _mean_curve([r.curve for r in rs], exp.curve_metric) for a, rs in results.items()}
    arm_commits = dict.fromkeys(selected, commit)
    env_extra: dict[str, Any] = {}
    if kept:
        old = kept["record"]
        old_env = old.get("environment", {})
        for arm in kept["arms"]:
            arm_metrics[arm] = old["arms"][arm]
            train_seconds[arm] = old_env.get("train_seconds_per_run", {}).get(arm, [])
            curves[arm] = old.get("curves", {}).get(arm, [])
            arm_commits[arm] = old_env.get("arm_commits", {}).get(arm, old_env.get("git_commit", "unknown"))
        wall += old_env.get("wall_seconds", 0.0)
        if "legacy_commits" in old_env:
            env_extra["legacy_commits"] = old_env["legacy_commits"]
        if "analysis" in old:
            env_extra["analysis_from"] = arm_commits[kept["arms"][0]]
    ordered = [a for a in exp.arms if a in arm_metrics]
    arm_metrics = {a: arm_metrics[a] for a in ordered}
    floor = exp.floor(ordered)
    comps, verdict = judge(
        arm_metrics,
        [{**c.__dict__, "headline": c.headline} for c in comparisons],
        floor,
    )
    setting = {**exp.setting, "arms": {a: exp.arms[a] for a in ordered}}
    if epochs is not None:
        setting["epochs_override"] = epochs
    data_sources = sources_used()
    record = {
        "schema": SCHEMA_VERSION,
        "paper": card.number,
        "package": card.package,
        "title": card.title,
        "preset": exp.preset,
        "claim": exp.claim,
        "setting": {**setting, "config_hash": config_hash(setting)},
        "environment": {
            **environment(),
            "git_commit": commit,
            **({"arm_commits": {a: arm_commits[a] for a in ordered}} if kept else {}),
            **{k: v for k, v in env_extra.items() if k != "analysis_from"},
            **_throughput(root, selected, n_seeds),
            **({"data_sources": data_sources} if data_sources else {}),
            "world_size": get_world_size(),
            "wall_seconds": round(wall, 1),
            "train_seconds_per_run": {a: train_seconds[a] for a in ordered},
        },
        "seeds": list(range(n_seeds)),
        "arms": arm_metrics,
        "floor": floor,
        "comparisons": comps,
        "reported": [r.as_dict() for r in card.reported],
        "verdict": verdict,
        "curves": {a: curves[a] for a in ordered},
    }
    if is_main_process():
        prefix = out_path.parent / exp.preset
        if exp.analysis is not None and not kept:
            prefix.parent.mkdir(parents=True, exist_ok=True)
            record["analysis"] = exp.analysis(record, results, prefix)
        elif kept and "analysis" in kept["record"]:
            record["analysis"] = kept["record"]["analysis"]  # made by the kept arms' runs
        path = write_record(record, out_path)
        if not kept:  # a merge has no per-epoch evaluations of the kept arms: keep their plot as it is
            _plot(record, results, exp, path.with_name(f"{exp.preset}_curves.png"))
        print(summary_table(record))
        print(f"record written to {path}")
    return record


def _mean_curve(curves: list[list[dict]], metric: str) -> list[list[float]]:
    """[[step, mean over seeds of ``metric``], ...] on the steps all seeds logged."""
    if not curves or not all(curves):
        return []
    by_step: dict[int, list[float]] = {}
    for curve in curves:
        for point in curve:
            if metric in point:
                by_step.setdefault(point["step"], []).append(point[metric])
    return [[s, sum(v) / len(v)] for s, v in sorted(by_step.items()) if len(v) == len(curves)]


def _plot(record: dict, results: dict[str, list[ArmResult]], exp: Experiment, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    has_eval = exp.eval_metric is not None and any(r.evaluations for rs in results.values() for r in rs)
    fig, axes = plt.subplots(1, 2 if has_eval else 1, figsize=(11 if has_eval else 6, 4), squeeze=False)
    ax = axes[0, 0]
    for arm, curve in record["curves"].items():
        if curve:
            ax.plot([p[0] for p in curve], [p[1] for p in curve], label=arm)
    ax.set(
        xlabel="step",
        ylabel=f"train {exp.curve_metric} (mean over seeds)",
        title=f"{record['package']} ({record['preset']})",
    )
    ax.legend(fontsize=7)
    if has_eval:
        ax = axes[0, 1]
        for arm, rs in results.items():
            points: dict[int, list[float]] = {}
            for r in rs:
                for e in r.evaluations:
                    if exp.eval_metric in e:
                        points.setdefault(e["epoch"], []).append(e[exp.eval_metric])
            xs = sorted(points)
            ax.plot(xs, [sum(points[x]) / len(points[x]) for x in xs], marker="o", label=arm)
        ax.set(xlabel="epoch", ylabel=f"{exp.eval_metric} (mean over seeds)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, path)


def interval_text(c: dict) -> str:
    """``+0.0123 [−0.0040, +0.0286]`` (95 % t interval of the paired difference), or n/a at one seed."""
    if c.get("ci_low") is None:
        return f"{c['mean_diff']:+.4f} [n/a, n={c['n']}]"
    return f"{c['mean_diff']:+.4f} [{c['ci_low']:+.4f}, {c['ci_high']:+.4f}]"


def summary_table(record: dict) -> str:
    """Arms × metrics (mean ± std over seeds), the floor, then each comparison with its interval and verdict."""
    metrics = sorted({m for arm in record["arms"].values() for m in arm})
    width = max(len(a) for a in record["arms"]) + 2
    lines = [f"\n{record['package']} / {record['preset']}: {record['claim']}", ""]
    lines.append("arm".ljust(width) + "".join(m.rjust(22) for m in metrics))
    for arm, values in record["arms"].items():
        cells = []
        for m in metrics:
            if m in values:
                mu, sd = mean_std(values[m])
                cells.append(f"{mu:.4f} ± {sd:.4f}".rjust(22))
            else:
                cells.append("-".rjust(22))
        lines.append(arm.ljust(width) + "".join(cells))
    for floor in floor_list(record.get("floor")):
        lines.append(
            f"\nfloor: arm {floor['arm']!r} on {floor['metric']}; an arm counts as trained when it beats it "
            f"with a 95 % paired interval above 0 and by at least {floor['min_gain']}"
        )
    lines.append("")
    for c in record["comparisons"]:
        mark = "*" if c.get("headline") else " "
        floor_note = f" (on the floor: {', '.join(c['on_floor'])})" if c.get("on_floor") else ""
        lines.append(
            f"{mark} {c['label']}: {c['metric']} diff {interval_text(c)} (95 % t, n={c['n']}){margin_note(c)} "
            f"-> {c['verdict']}{floor_note}"
        )
    lines.append(f"\nclaim (conjunction of the * comparisons): {record['verdict']}")
    if record["reported"]:
        lines.append("\nreported by the paper (paper scale):")
        lines += [f"  {r['metric']}: {r['value']} ({r['setting']}; {r['source']})" for r in record["reported"]]
    return "\n".join(lines)


__all__ = [
    "Analysis",
    "ArmResult",
    "ArmRun",
    "Comparison",
    "Experiment",
    "paired_verdict",
    "run_experiment",
    "summary_table",
    "untrained_arm",
    "with_floor",
]
