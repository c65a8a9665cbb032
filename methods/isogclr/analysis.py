"""The learned temperatures against class frequency: per-run statistics and the preset's analysis.

The paper's reading of iSogCLR: frequent semantics end with large τ_i (keep local structure), rare
ones with small τ_i (more separable). On a long-tailed split the class of a sample stands in for
its semantics: we average τ_i per class and correlate it with the class's training count
(Spearman and Pearson, per seed and for the seed mean; a positive correlation is the prediction).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch
from scipy import stats

QUANTILES = (0.1, 0.5, 0.9)


def tau_statistics(tau: torch.Tensor, labels: torch.Tensor, log_s: torch.Tensor | None = None) -> dict[str, Any]:
    """JSON-able per-class statistics of the final per-sample τ_i (only samples visited at least once)."""
    if tau.shape != labels.shape:
        raise ValueError(f"tau and labels must have the same shape, got {tuple(tau.shape)} and {tuple(labels.shape)}")
    visited = torch.ones_like(tau, dtype=torch.bool) if log_s is None else torch.isfinite(log_s)
    num_classes = int(labels.max()) + 1
    mean, std, quantiles = [], [], []
    for c in range(num_classes):
        t = tau[(labels == c) & visited].double()
        mean.append(float(t.mean()) if len(t) else float("nan"))
        std.append(float(t.std()) if len(t) > 1 else 0.0)
        quantiles.append(
            [float(q) for q in torch.quantile(t, torch.tensor(QUANTILES, dtype=t.dtype))] if len(t) else []
        )
    t = tau[visited]
    return {
        "tau_class_mean": mean,
        "tau_class_std": std,
        "tau_class_quantiles": quantiles,
        "tau_mean": float(t.mean()),
        "tau_min_max": [float(t.min()), float(t.max())],
    }


def _clean(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 4)


def correlations(counts: list[float], values: list[float]) -> dict[str, float | None]:
    """Spearman and Pearson correlation of ``values`` with ``counts`` (None when undefined)."""
    if len(set(values)) < 2 or len(set(counts)) < 2:
        return {"spearman": None, "pearson": None}
    return {
        "spearman": _clean(stats.spearmanr(counts, values).statistic),
        "pearson": _clean(stats.pearsonr(counts, values).statistic),
    }


def tau_frequency_analysis(record: dict, results: dict, out_prefix: Path) -> dict[str, Any]:
    """Per-class mean τ of every iSogCLR arm vs class count, their correlations, per-class kNN of every arm.

    With several iSogCLR arms (the long tail in reverse class order is the control that separates
    a class's frequency from its semantics), ``tau_between_arms`` correlates their per-class τ.
    Writes ``<out_prefix>_tau_vs_frequency.png``.
    """
    out: dict[str, Any] = {"knn_per_class": {}, "tau": {}}
    for arm, runs in results.items():
        extras = [r.extras for r in runs if r.extras]
        if not extras:
            continue
        counts = extras[0]["class_counts"]
        per_class = torch.tensor([e["knn_per_class"] for e in extras]).mean(0)
        out["knn_per_class"][arm] = [round(float(v), 4) for v in per_class]
        out.setdefault("class_counts", {})[arm] = counts
        taus = [e["tau_class_mean"] for e in extras if "tau_class_mean" in e]
        if taus:
            mean_tau = torch.tensor(taus).mean(0).tolist()
            out["tau"][arm] = {
                "class_counts": counts,
                "tau_class_mean": [round(v, 5) for v in mean_tau],
                "tau_class_mean_per_seed": [[round(v, 5) for v in t] for t in taus],
                "tau_mean": round(sum(e["tau_mean"] for e in extras) / len(extras), 5),
                "tau_min_max_per_seed": [[round(v, 4) for v in e["tau_min_max"]] for e in extras],
                "tau_class_quantiles_10_50_90_per_seed": [
                    [[round(v, 4) for v in q] for q in e["tau_class_quantiles"]] for e in extras
                ],
                **correlations(counts, mean_tau),
                "per_seed": [correlations(counts, t) for t in taus],
            }
    arms = list(out["tau"])
    out["tau_between_arms"] = {
        f"{a} vs {b}": correlations(out["tau"][a]["tau_class_mean"], out["tau"][b]["tau_class_mean"])
        for i, a in enumerate(arms)
        for b in arms[i + 1 :]
    }
    if out["tau"] or out["knn_per_class"]:
        _plot(out, f"{out_prefix}_tau_vs_frequency.png")
    return out


def _plot(out: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    ax = axes[0]
    for arm, t in out["tau"].items():
        per_seed = torch.tensor(t["tau_class_mean_per_seed"])
        err = per_seed.std(0).tolist() if len(per_seed) > 1 else None
        ax.errorbar(t["class_counts"], t["tau_class_mean"], yerr=err, marker="o", ls="", capsize=3, label=arm)
        for c, (x, y) in enumerate(zip(t["class_counts"], t["tau_class_mean"], strict=True)):
            ax.annotate(str(c), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_title(
        "learned τ_i per class; Spearman with count: "
        + ", ".join(f"{arm} {t['spearman']}" for arm, t in out["tau"].items()),
        fontsize=8,
    )
    ax.set(xscale="log", xlabel="training images of the class", ylabel="mean learned τ_i (mean over seeds)")
    if out["tau"]:
        ax.legend(fontsize=7)
    ax = axes[1]
    for arm, acc in out["knn_per_class"].items():
        pairs = sorted(zip(out["class_counts"][arm], acc, strict=True))
        ax.plot([p[0] for p in pairs], [p[1] for p in pairs], marker=".", label=arm)
    ax.set(xscale="log", xlabel="training images of the class", ylabel="kNN top-1 on the class (balanced test)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    tmp = path.replace(".png", ".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, path)
