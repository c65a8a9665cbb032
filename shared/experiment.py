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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from shared.distributed import get_world_size, is_main_process
from shared.registry import PaperCard
from shared.results import SCHEMA_VERSION, make_comparison, mean_std, paired_verdict, write_record


@dataclass(frozen=True)
class Comparison:
    """``method`` beats ``baseline`` on ``metric`` in ``direction`` ("greater"/"less")."""

    label: str
    baseline: str
    method: str
    metric: str
    direction: str = "greater"


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

    def __post_init__(self) -> None:
        for c in self.comparisons:
            for arm in (c.baseline, c.method):
                if arm not in self.arms:
                    raise ValueError(f"comparison {c.label!r} names unknown arm {arm!r}")


def config_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            cwd=Path(__file__).resolve().parent,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment() -> dict[str, str]:
    import accelerate
    import torchvision

    versions = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "accelerate": accelerate.__version__,
    }
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)"
    return {**versions, "device": device, "threads": str(torch.get_num_threads())}


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
    final = run_dir / "final.json"
    if resume and final.exists():
        saved = json.loads(final.read_text())
        return ArmResult(
            saved["metrics"], saved["curve"], saved["evaluations"], saved["wall_seconds"], saved.get("extras", {})
        )
    if not resume and is_main_process() and run_dir.exists():
        shutil.rmtree(run_dir)
    spec = ArmRun(arm, exp.arms[arm], seed, run_dir, resume, data_dir, epochs, progress)
    result = exp.train_arm(spec)
    if is_main_process():
        run_dir.mkdir(parents=True, exist_ok=True)
        tmp = final.with_suffix(".tmp")
        tmp.write_text(json.dumps(result.__dict__, indent=1))
        os.replace(tmp, final)
    return result


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
) -> dict:
    """Train every (arm, seed), write ``<out_dir>/<package>/<preset>.json``, return the record."""
    n_seeds = exp.default_seeds if seeds is None else seeds
    if n_seeds < 1:
        raise ValueError(f"--seeds must be at least 1, got {n_seeds}")
    selected = arms if arms else list(exp.arms)
    unknown = [a for a in selected if a not in exp.arms]
    if unknown:
        raise ValueError(f"unknown arm(s) {unknown}; {card.package}/{exp.preset} has {list(exp.arms)}")
    comparisons = [c for c in exp.comparisons if c.baseline in selected and c.method in selected]
    if not comparisons:
        raise ValueError("the selected arms make no comparison of this preset")
    root = Path(run_root) / card.package / exp.preset
    commit = git_commit()  # the code that trains, read before any later edit of the tree
    start = time.perf_counter()
    results: dict[str, list[ArmResult]] = {}
    for seed in range(n_seeds):  # seed-major: an interrupted run still has complete pairs
        for arm in selected:
            print(f"[{card.package}/{exp.preset}] arm {arm}, seed {seed}", flush=True)
            results.setdefault(arm, []).append(_run_one(exp, arm, seed, root, resume, data_dir, epochs, progress))
    wall = time.perf_counter() - start
    arm_metrics = {a: {m: [r.metrics[m] for r in rs] for m in rs[0].metrics} for a, rs in results.items()}
    comps = [make_comparison(arm_metrics, c.baseline, c.method, c.metric, c.direction, c.label) for c in comparisons]
    setting = {**exp.setting, "arms": {a: exp.arms[a] for a in selected}}
    if epochs is not None:
        setting["epochs_override"] = epochs
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
            "world_size": get_world_size(),
            "wall_seconds": round(wall, 1),
            "train_seconds_per_run": {a: [round(r.wall_seconds, 1) for r in rs] for a, rs in results.items()},
        },
        "seeds": list(range(n_seeds)),
        "arms": arm_metrics,
        "comparisons": comps,
        "reported": [r.as_dict() for r in card.reported],
        "verdict": comps[0]["verdict"],
        "curves": {a: _mean_curve([r.curve for r in rs], exp.curve_metric) for a, rs in results.items()},
    }
    if is_main_process():
        prefix = Path(out_dir) / card.package / exp.preset
        if exp.analysis is not None:
            prefix.parent.mkdir(parents=True, exist_ok=True)
            record["analysis"] = exp.analysis(record, results, prefix)
        path = write_record(record, Path(out_dir) / card.package / f"{exp.preset}.json")
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


def summary_table(record: dict) -> str:
    """Arms × metrics (mean ± std over seeds), then each comparison with its verdict."""
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
    lines.append("")
    for c in record["comparisons"]:
        lines.append(
            f"{c['label']}: {c['metric']} diff {c['mean_diff']:+.4f} ± {_se(c['se'])} (SE, n={c['n']}) "
            f"-> {c['verdict']}"
        )
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
]


def _se(se: float | None) -> str:
    return "n/a" if se is None else f"{se:.4f}"
