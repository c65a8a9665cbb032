"""The result record: the contract between ``repro run`` and ``REPRODUCTIONS.md``.

One JSON file per experiment, ``results/<package>/<preset>.json``, written atomically and
validated on read. Its verdicts are *recomputed* from the per-seed numbers when it is
read, so a record whose verdict was edited by hand fails validation.

Verdict rule v2 (paired seeds). For one comparison, d_s = method_s − baseline_s over the
n seeds; with mean d̄, SE = sd(d)/√n and t* = t(0.975, n − 1) the 95 % two-sided Student-t
interval is d̄ ± t*·SE. Then

* ``reproduced``    — the interval lies wholly on the side the paper claims;
* ``contradicted``  — wholly on the other side;
* ``inconclusive``  — it contains 0 (and always when n < 2);
* a *non-inferiority* comparison (``margin`` m > 0: "the method does not hurt by more than m")
  moves the boundary from 0 to −m: ``reproduced`` when the interval, in the claimed direction,
  lies wholly above −m, ``contradicted`` when wholly below −m, else ``inconclusive``
  (m = 0, the default and the value of a record without the key, is the superiority rule above);
* ``under-trained`` — the record has a *floor* (an ``untrained`` arm: the same architecture
  at its seed's initialisation, or the pretrained start of a fine-tuning paper, scored by
  the same evaluation) and one of the two arms does not beat it on the floor metric with a
  paired interval above 0 *and* a mean gain of at least ``min_gain``.

A claim is a conjunction of its *headline* comparisons: the record's verdict is
``reproduced`` only if every headline part is; ``mixed`` if some are reproduced and some
contradicted; ``contradicted`` if a part is contradicted and none reproduced; otherwise
``under-trained`` if a part is, else ``inconclusive``. Other comparisons are shown but do
not set the verdict.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

from scipy.stats import t as student_t

SCHEMA_VERSION = 2
VERDICTS = ("reproduced", "contradicted", "inconclusive", "under-trained")
CLAIM_VERDICTS = (*VERDICTS, "mixed")
DIRECTIONS = ("greater", "less")
CONFIDENCE = 0.95
DEFAULT_MIN_GAIN = 0.02
REQUIRED = (
    "schema",
    "paper",
    "package",
    "title",
    "preset",
    "claim",
    "setting",
    "arms",
    "seeds",
    "comparisons",
    "reported",
    "verdict",
)


class RecordError(ValueError):
    """A result record is malformed or inconsistent with its own numbers."""


def t_critical(n: int, confidence: float = CONFIDENCE) -> float:
    """t(1 − α/2, n − 1): 12.71 at n = 2, 4.30 at n = 3, 2.78 at n = 5."""
    if n < 2:
        raise ValueError(f"a t interval needs at least 2 values, got {n}")
    return float(student_t.ppf(0.5 + confidence / 2, n - 1))


def _check_direction(direction: str) -> int:
    if direction not in DIRECTIONS:
        raise RecordError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    return 1 if direction == "greater" else -1


def paired_interval(baseline: list[float], method: list[float]) -> dict[str, Any]:
    """Mean paired difference (method − baseline), its SE and 95 % Student-t interval.

    With fewer than two pairs the SE and interval are ``None``.
    """
    if len(baseline) != len(method):
        raise RecordError(f"paired comparison needs equal seed counts, got {len(baseline)} and {len(method)}")
    diffs = [m - b for b, m in zip(baseline, method, strict=True)]
    n = len(diffs)
    mean = statistics.fmean(diffs) if diffs else float("nan")
    if n < 2:
        return {"mean_diff": mean, "se": None, "n": n, "t_crit": None, "ci_low": None, "ci_high": None}
    se = statistics.stdev(diffs) / math.sqrt(n)
    t_star = t_critical(n)
    return {
        "mean_diff": mean,
        "se": se,
        "n": n,
        "t_crit": t_star,
        "ci_low": mean - t_star * se,
        "ci_high": mean + t_star * se,
    }


def check_margin(margin: float) -> float:
    """A non-inferiority margin: a finite number ≥ 0, in the metric's units (0: superiority)."""
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not math.isfinite(margin) or margin < 0:
        raise RecordError(f"margin must be a finite number >= 0, got {margin!r}")
    return float(margin)


def paired_verdict(baseline: list[float], method: list[float], direction: str, margin: float = 0.0) -> dict[str, Any]:
    """The interval verdict of one comparison: reproduced / contradicted / inconclusive (no floor).

    With ``margin`` m > 0 (non-inferiority) the interval of the difference in the claimed
    direction is judged against −m instead of 0.
    """
    sign = _check_direction(direction)
    margin = check_margin(margin)
    stats = paired_interval(baseline, method)
    if stats["se"] is None:
        verdict = "inconclusive"
    else:
        low, high = sorted((sign * stats["ci_low"], sign * stats["ci_high"]))
        verdict = "reproduced" if low > -margin else "contradicted" if high < -margin else "inconclusive"
    return {**stats, "verdict": verdict}


def margin_note(comparison: dict) -> str:
    """`` (non-inferior within 0.01)`` for a non-inferiority comparison, else empty (for tables)."""
    margin = comparison.get("margin", 0.0)
    return f" (non-inferior within {margin:g})" if margin else ""


def floor_list(floor: dict | list[dict] | None) -> list[dict]:
    """A record's floor as a list: one dict judges every arm; several (each naming the ``arms`` it
    judges, one of them may omit ``arms`` and judge the rest) serve presets with several data sets."""
    if floor is None:
        return []
    return [floor] if isinstance(floor, dict) else list(floor)


def floor_status(arms: dict, floor: dict | list[dict]) -> dict[str, dict[str, Any]]:
    """For every arm but the floor arms: its paired gain over its floor on the floor metric.

    ``trained`` is True when the 95 % interval of the gain (in the floor's direction) lies
    above 0 and the mean gain is at least ``min_gain``.
    """
    floors = floor_list(floor)
    refs = {f["arm"] for f in floors}
    named = {a for f in floors for a in f.get("arms", [])}
    status = {}
    for f in floors:
        ref, metric, min_gain = f["arm"], f["metric"], f["min_gain"]
        sign = _check_direction(f["direction"])
        if ref not in arms or metric not in arms[ref]:
            raise RecordError(f"the floor needs metric {metric!r} of arm {ref!r}")
        judged = f["arms"] if "arms" in f else [a for a in arms if a not in named]
        for arm in judged:
            if arm in refs or arm not in arms or metric not in arms[arm]:
                continue
            stats = paired_interval([sign * v for v in arms[ref][metric]], [sign * v for v in arms[arm][metric]])
            trained = stats["ci_low"] is not None and stats["ci_low"] > 0 and stats["mean_diff"] >= min_gain
            status[arm] = {
                "floor": ref,
                "gain": stats["mean_diff"],
                "ci_low": stats["ci_low"],
                "ci_high": stats["ci_high"],
                "trained": trained,
            }
    return status


def make_comparison(
    arms: dict,
    baseline: str,
    method: str,
    metric: str,
    direction: str,
    label: str = "",
    headline: bool = False,
    floor: dict | list[dict] | None = None,
    margin: float = 0.0,
) -> dict:
    """One comparison with its interval and verdict (``under-trained`` when an arm sits on the floor).

    ``margin`` > 0 makes it a non-inferiority comparison (see the module docstring).
    """
    for arm in (baseline, method):
        if arm not in arms or metric not in arms[arm]:
            raise RecordError(f"comparison needs metric {metric!r} of arm {arm!r}")
    stats = paired_verdict(arms[baseline][metric], arms[method][metric], direction, margin)
    verdict = stats["verdict"]
    untrained_arms: list[str] = []
    if floor:
        status = floor_status(arms, floor)
        refs = {f["arm"] for f in floor_list(floor)}
        untrained_arms = [a for a in (baseline, method) if a not in refs and not status.get(a, {}).get("trained")]
        if untrained_arms:
            verdict = "under-trained"
    return {
        "label": label or f"{method} vs {baseline}",
        "baseline": baseline,
        "method": method,
        "metric": metric,
        "direction": direction,
        "headline": headline,
        "margin": float(margin),
        **{k: v for k, v in stats.items() if k != "verdict"},
        "interval_verdict": stats["verdict"],
        "on_floor": untrained_arms,
        "verdict": verdict,
    }


def claim_verdict(comparisons: list[dict]) -> str:
    """The conjunction of the headline comparisons (see the module docstring)."""
    parts = [c["verdict"] for c in comparisons if c.get("headline")]
    if not parts:
        raise RecordError("record has no headline comparison")
    if all(v == "reproduced" for v in parts):
        return "reproduced"
    if "reproduced" in parts and "contradicted" in parts:
        return "mixed"
    if "contradicted" in parts:
        return "contradicted"
    return "under-trained" if "under-trained" in parts else "inconclusive"


def judge(arms: dict, comparisons: list[dict], floor: dict | list[dict] | None) -> tuple[list[dict], str]:
    """Recompute every comparison of a record and its claim verdict from the numbers."""
    fresh = [
        make_comparison(
            arms,
            c["baseline"],
            c["method"],
            c["metric"],
            c["direction"],
            c["label"],
            c.get("headline", False),
            floor,
            c.get("margin", 0.0),
        )
        for c in comparisons
    ]
    return fresh, claim_verdict(fresh)


def mean_std(values: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else 0.0)


def upgrade(record: dict) -> dict:
    """A schema-1 record (verdict = 2·SE rule, first comparison = headline, no floor) as schema 2.

    The per-seed numbers are kept; the verdicts are recomputed under rule v2.
    """
    if record.get("schema") != 1:
        return record
    comps = [dict(c, headline=(i == 0)) for i, c in enumerate(record["comparisons"])]
    fresh, verdict = judge(record["arms"], comps, None)
    return {**record, "schema": SCHEMA_VERSION, "floor": None, "comparisons": fresh, "verdict": verdict}


def validate(record: dict) -> dict:
    """Check a record's fields and that its verdicts follow from its numbers."""
    missing = [k for k in REQUIRED if k not in record]
    if missing:
        raise RecordError(f"record lacks fields {missing}")
    if record["schema"] != SCHEMA_VERSION:
        raise RecordError(f"unknown schema version {record['schema']} (this code reads {SCHEMA_VERSION})")
    n_seeds = len(record["seeds"])
    for arm, metrics in record["arms"].items():
        for metric, values in metrics.items():
            if len(values) != n_seeds:
                raise RecordError(f"arm {arm!r} metric {metric!r} has {len(values)} values for {n_seeds} seeds")
            if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
                raise RecordError(f"arm {arm!r} metric {metric!r} has a non-finite value")
    if not record["comparisons"]:
        raise RecordError("record has no comparison")
    floor = record.get("floor")
    for f in floor_list(floor):
        for key in ("arm", "metric", "direction", "min_gain"):
            if key not in f:
                raise RecordError(f"the record's floor lacks {key!r}")
    fresh, verdict = judge(record["arms"], record["comparisons"], floor)
    for stored, new in zip(record["comparisons"], fresh, strict=True):
        if stored.get("verdict") != new["verdict"]:
            raise RecordError(
                f"comparison {stored['label']!r} says {stored.get('verdict')}, its numbers say {new['verdict']}"
            )
    if record["verdict"] != verdict:
        raise RecordError(f"the record's verdict says {record['verdict']}, its headline comparisons say {verdict}")
    for rep in record["reported"]:
        for key in ("metric", "value", "setting", "source"):
            if key not in rep:
                raise RecordError(f"reported number lacks {key!r}: {rep}")
    return record


def atomic_write_text(text: str, path: str | os.PathLike) -> Path:
    """Write ``text`` to ``path`` through a temp file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_record(record: dict, path: str | os.PathLike) -> Path:
    """Validate, then write atomically (temp file in the same folder + rename)."""
    validate(record)
    return atomic_write_text(json.dumps(record, indent=2, sort_keys=False) + "\n", path)


def read_record(path: str | os.PathLike) -> dict:
    """Read and validate a record (a schema-1 record is upgraded in memory); errors name the file."""
    try:
        with open(path) as f:
            record = json.load(f)
    except json.JSONDecodeError as exc:
        raise RecordError(f"{path} is not valid JSON ({exc}); restore it from git or rerun its preset") from exc
    except OSError as exc:
        raise RecordError(f"{path} cannot be read: {exc}") from exc
    if not isinstance(record, dict):
        raise RecordError(f"{path} is not a result record (a JSON object)")
    try:
        return validate(upgrade(record))
    except RecordError as exc:
        raise RecordError(f"{path}: {exc}") from exc
    except (KeyError, TypeError, AttributeError) as exc:
        raise RecordError(f"{path}: malformed record ({type(exc).__name__}: {exc})") from exc


def load_records(results_dir: str | os.PathLike) -> list[dict]:
    """Every ``results/<package>/<preset>.json`` except smoke runs, validated."""
    records = []
    for path in sorted(Path(results_dir).glob("*/*.json")):
        if path.stem == "smoke":
            continue
        records.append(read_record(path))
    return records
