"""Per-stage analysis of an MCL record: probe accuracy by stage, paired stage gains, cluster NMI, a plot.

Runs after all (arm, seed) runs (``Experiment(analysis=...)``) and writes
``<out_prefix>_stages.png``: linear-probe top-1 on the class and on the colour for every stage
alone and for the concatenation, MCL arms as lines, the SimCLR baseline as a band.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from shared.experiment import ArmResult
from shared.results import mean_std, paired_verdict

FEATURES = ("class", "colour")


def _stage_count(results: list[ArmResult]) -> int:
    return sum(1 for k in results[0].metrics if k.startswith("class_linear_s"))


def per_stage_analysis(record: dict, results: dict[str, list[ArmResult]], out_prefix: Path) -> dict[str, Any]:
    """Means per (arm, feature, stage); paired gains of stage s over stage 0 within each multistage arm;
    NMI of each stage's clusters with the colour and with the class."""
    out: dict[str, Any] = {"probe": {}, "stage_gain_over_stage0": {}, "cluster_nmi": {}}
    for arm, rs in results.items():
        n_stages = _stage_count(rs)
        out["probe"][arm] = {}
        for feature in FEATURES:
            cells = {f"s{s}": [r.metrics[f"{feature}_linear_s{s}"] for r in rs] for s in range(n_stages)}
            cells["concat"] = [r.metrics[f"{feature}_linear"] for r in rs]
            out["probe"][arm][feature] = {k: list(mean_std(v)) for k, v in cells.items()}
            if n_stages > 1:
                gains = {}
                for s in range(1, n_stages):
                    gains[f"s{s}"] = paired_verdict(cells["s0"], cells[f"s{s}"], "greater")
                gains["concat"] = paired_verdict(cells["s0"], cells["concat"], "greater")
                out["stage_gain_over_stage0"].setdefault(arm, {})[feature] = gains
        stages = [r.extras.get("stages", []) for r in rs]
        if all(stages):
            out["cluster_nmi"][arm] = [
                {
                    key: list(mean_std([st[s][key] for st in stages]))
                    for key in ("cluster_nmi_colour", "cluster_nmi_class", "pseudo_labels", "dropped_per_epoch")
                }
                for s in range(len(stages[0]))
            ]
    _plot(out["probe"], Path(f"{out_prefix}_stages.png"), record.get("preset", ""))
    return out


def _plot(probe: dict, path: Path, preset: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    colours = dict(zip(probe, plt.rcParams["axes.prop_cycle"].by_key()["color"], strict=False))
    for ax, feature in zip(axes, FEATURES, strict=True):
        for arm, per_feature in probe.items():
            cells = per_feature[feature]
            names = list(cells)
            means = [cells[k][0] for k in names]
            stds = [cells[k][1] for k in names]
            if len(names) == 2:  # one stage: a band for the baseline
                ax.axhspan(means[-1] - stds[-1], means[-1] + stds[-1], alpha=0.15, color=colours.get(arm))
                ax.axhline(means[-1], color=colours.get(arm), linestyle="--", label=f"{arm} (one stage)")
                continue
            ax.errorbar(range(len(names)), means, yerr=stds, marker="o", capsize=3, label=arm, color=colours.get(arm))
            ax.set_xticks(range(len(names)), [n.replace("s", "stage ") if n != "concat" else "concat" for n in names])
        ax.set(ylabel=f"linear-probe top-1 on the {feature}", title=f"{feature} ({preset})")
        ax.legend(fontsize=7)
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, path)
