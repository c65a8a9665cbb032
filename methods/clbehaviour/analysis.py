"""The τ sweep as curves: uniformity, tolerance and kNN top-1 against τ, plain and hard loss.

``analyse_sweep`` is the :class:`shared.experiment.Experiment` analysis hook. It returns, per loss
and τ, the mean and std over seeds of every metric; for the plain loss the per-seed Spearman rank
correlation of each metric with τ (+1: that seed's curve rises monotonically) and the τ with the
best kNN top-1 in each seed; and it draws ``<prefix>_tau_sweep.png`` (the curves and the
uniformity–tolerance plane) and ``<prefix>_similarity.png`` (same- vs different-class similarity
densities of seed 0). The paired, step-by-step trend verdicts are the record's comparisons.
"""

from __future__ import annotations

import os
import statistics
from pathlib import Path
from typing import Any

from shared.experiment import ArmResult, is_untrained

METRICS = ("knn_top1", "l_unif", "tolerance", "l_unif_backbone", "tolerance_backbone")
LABELS = {
    "knn_top1": "kNN top-1 (backbone)",
    "l_unif": "L_uniformity (lower = more uniform)",
    "tolerance": "tolerance (same-class mean cos)",
}


def _ranks(xs: list[float]) -> list[float]:
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    ranks = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2
        i = j + 1
    return ranks


def spearman(x: list[float], y: list[float]) -> float:
    """Spearman rank correlation (average ranks for ties); nan when either side is constant."""
    rx, ry = _ranks(x), _ranks(y)
    mx, my = statistics.fmean(rx), statistics.fmean(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    vx, vy = sum((a - mx) ** 2 for a in rx), sum((b - my) ** 2 for b in ry)
    return cov / (vx * vy) ** 0.5 if vx > 0 and vy > 0 else float("nan")


def sweep_table(record: dict) -> dict[str, dict[float, str]]:
    """``{loss: {τ: arm}}`` from the record's trained arms' configs (the untrained floor is no point of the sweep)."""
    table: dict[str, dict[float, str]] = {}
    for arm, cfg in record["setting"]["arms"].items():
        if arm in record["arms"] and not is_untrained(cfg):
            table.setdefault(cfg["loss"], {})[cfg["temperature"]] = arm
    return {loss: dict(sorted(taus.items())) for loss, taus in table.items()}


def _mean_std(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def analyse_sweep(record: dict, results: dict[str, list[ArmResult]], prefix: Path) -> dict[str, Any]:
    table = sweep_table(record)
    arms = record["arms"]
    curves = {
        loss: {f"{t:g}": {m: _mean_std(arms[a][m]) for m in METRICS if m in arms[a]} for t, a in taus.items()}
        for loss, taus in table.items()
    }
    out: dict[str, Any] = {"curves": curves}
    plain = table.get("plain", {})
    if len(plain) >= 3:
        taus = list(plain)
        n_seeds = min(len(arms[a]["knn_top1"]) for a in plain.values())
        trends = {}
        for m in (m for m in METRICS if all(m in arms[a] for a in plain.values())):
            rho = [spearman(taus, [arms[plain[t]][m][s] for t in taus]) for s in range(n_seeds)]
            trends[m] = {"spearman_per_seed": rho, "monotone_increasing_seeds": sum(r == 1.0 for r in rho)}
        out["plain_trend_vs_tau"] = trends
        out["best_knn_tau_per_seed"] = [max(taus, key=lambda t: arms[plain[t]]["knn_top1"][s]) for s in range(n_seeds)]
    _plot_sweep(curves, prefix.with_name(prefix.name + "_tau_sweep.png"), record)
    _plot_histograms(table, results, prefix.with_name(prefix.name + "_similarity.png"))
    return out


def _savefig(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    tmp = path.with_name(path.stem + ".tmp.png")
    fig.tight_layout()
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, path)


def _plot_sweep(curves: dict, path: Path, record: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(18, 4))
    styles = {"plain": dict(marker="o", label="contrastive loss"), "hard": dict(marker="s", label="hard contrastive")}
    for ax, m in zip(axes[:3], ("l_unif", "tolerance", "knn_top1"), strict=True):
        for loss, by_tau in curves.items():
            taus = [float(t) for t in by_tau]
            ax.errorbar(
                taus,
                [by_tau[t][m]["mean"] for t in by_tau],
                yerr=[by_tau[t][m]["std"] for t in by_tau],
                capsize=3,
                **styles.get(loss, {"label": loss}),
            )
        ax.set(xscale="log", xlabel="τ", ylabel=LABELS[m], title=f"{LABELS[m]} vs τ")
        ax.legend(fontsize=7)
    ax = axes[3]
    for loss, by_tau in curves.items():
        xs = [by_tau[t]["l_unif"]["mean"] for t in by_tau]
        ys = [by_tau[t]["tolerance"]["mean"] for t in by_tau]
        ax.plot(xs, ys, **styles.get(loss, {"label": loss}))
        for t, x, y in zip(by_tau, xs, ys, strict=True):
            ax.annotate(f"τ={t}", (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set(xlabel="L_uniformity", ylabel="tolerance", title="uniformity–tolerance plane (mean over seeds)")
    ax.legend(fontsize=7)
    fig.suptitle(f"{record['package']} ({record['preset']}): mean ± std over {len(record['seeds'])} seed(s)")
    _savefig(fig, path)


def _plot_histograms(table: dict, results: dict[str, list[ArmResult]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(loss, t, a) for loss, taus in table.items() for t, a in taus.items()]
    panels = [(loss, t, a) for loss, t, a in panels if results[a] and "similarity_histograms" in results[a][0].extras]
    if not panels:
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 2.8), squeeze=False, sharey=True)
    for ax, (loss, t, arm) in zip(axes[0], panels, strict=True):
        h = results[arm][0].extras["similarity_histograms"]
        centres = [(a + b) / 2 for a, b in zip(h["edges"], h["edges"][1:], strict=False)]
        width = h["edges"][1] - h["edges"][0]
        ax.bar(centres, h["different_class"], width=width, alpha=0.5, label="different class")
        ax.bar(centres, h["same_class"], width=width, alpha=0.5, label="same class")
        ax.set(title=f"{loss}, τ={t:g}", xlabel="cosine similarity")
    axes[0, 0].set_ylabel("density (seed 0)")
    axes[0, 0].legend(fontsize=6)
    _savefig(fig, path)
