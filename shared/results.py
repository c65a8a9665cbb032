"""The result record: the contract between ``repro run`` and ``REPRODUCTIONS.md``.

One JSON file per experiment, ``results/<package>/<preset>.json``, written atomically and
validated on read. Its verdicts are *recomputed* from the per-seed numbers when it is
read, so a record whose verdict was edited by hand fails validation.

Verdict rule (paired seeds): for each comparison, d_s = method_s − baseline_s; with mean
d̄ and standard error SE = sd(d)/√n,

* ``reproduced``   — d̄ has the sign the paper claims and |d̄| > 2·SE;
* ``contradicted`` — d̄ has the opposite sign and |d̄| > 2·SE;
* ``inconclusive`` — otherwise (including n < 2).
"""

from __future__ import annotations

import json
import math
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
VERDICTS = ("reproduced", "contradicted", "inconclusive")
DIRECTIONS = ("greater", "less")
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


def paired_verdict(baseline: list[float], method: list[float], direction: str) -> dict[str, Any]:
    """The verdict of one comparison from paired per-seed values (see module docstring)."""
    if direction not in DIRECTIONS:
        raise RecordError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    if len(baseline) != len(method):
        raise RecordError(f"paired comparison needs equal seed counts, got {len(baseline)} and {len(method)}")
    diffs = [m - b for b, m in zip(baseline, method, strict=True)]
    n = len(diffs)
    mean = statistics.fmean(diffs) if diffs else float("nan")
    se = statistics.stdev(diffs) / math.sqrt(n) if n >= 2 else None
    sign = 1 if direction == "greater" else -1
    if se is None:
        verdict = "inconclusive"
    elif sign * mean > 2 * se:
        verdict = "reproduced"
    elif -sign * mean > 2 * se:
        verdict = "contradicted"
    else:
        verdict = "inconclusive"
    return {"mean_diff": mean, "se": se, "n": n, "verdict": verdict}


def make_comparison(arms: dict, baseline: str, method: str, metric: str, direction: str, label: str = "") -> dict:
    for arm in (baseline, method):
        if arm not in arms or metric not in arms[arm]:
            raise RecordError(f"comparison needs metric {metric!r} of arm {arm!r}")
    stats = paired_verdict(arms[baseline][metric], arms[method][metric], direction)
    return {
        "label": label or f"{method} vs {baseline}",
        "baseline": baseline,
        "method": method,
        "metric": metric,
        "direction": direction,
        **stats,
    }


def mean_std(values: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else 0.0)


def validate(record: dict) -> dict:
    """Check a record's fields and that its verdicts follow from its numbers."""
    missing = [k for k in REQUIRED if k not in record]
    if missing:
        raise RecordError(f"record lacks fields {missing}")
    if record["schema"] != SCHEMA_VERSION:
        raise RecordError(f"unknown schema version {record['schema']}")
    n_seeds = len(record["seeds"])
    for arm, metrics in record["arms"].items():
        for metric, values in metrics.items():
            if len(values) != n_seeds:
                raise RecordError(f"arm {arm!r} metric {metric!r} has {len(values)} values for {n_seeds} seeds")
            if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
                raise RecordError(f"arm {arm!r} metric {metric!r} has a non-finite value")
    if not record["comparisons"]:
        raise RecordError("record has no comparison")
    for comp in record["comparisons"]:
        fresh = make_comparison(record["arms"], comp["baseline"], comp["method"], comp["metric"], comp["direction"])
        if fresh["verdict"] != comp["verdict"]:
            raise RecordError(
                f"comparison {comp['label']!r} says {comp['verdict']}, its numbers say {fresh['verdict']}"
            )
    if record["verdict"] != record["comparisons"][0]["verdict"]:
        raise RecordError("the record's verdict must be that of its first (headline) comparison")
    for rep in record["reported"]:
        for key in ("metric", "value", "setting", "source"):
            if key not in rep:
                raise RecordError(f"reported number lacks {key!r}: {rep}")
    return record


def write_record(record: dict, path: str | os.PathLike) -> Path:
    """Validate, then write atomically (temp file in the same folder + rename)."""
    validate(record)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(record, f, indent=2, sort_keys=False)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_record(path: str | os.PathLike) -> dict:
    try:
        with open(path) as f:
            record = json.load(f)
    except json.JSONDecodeError as exc:
        raise RecordError(f"{path} is not valid JSON: {exc}") from exc
    try:
        return validate(record)
    except RecordError as exc:
        raise RecordError(f"{path}: {exc}") from exc


def load_records(results_dir: str | os.PathLike) -> list[dict]:
    """Every ``results/<package>/<preset>.json`` except smoke runs, validated."""
    records = []
    for path in sorted(Path(results_dir).glob("*/*.json")):
        if path.stem == "smoke":
            continue
        records.append(read_record(path))
    return records
