"""The multistage loop: train a stage, cluster its features, train the next on the combined labels.

    stage 0:  SimCLR (one pseudo-label: every other sample is a negative)
              c⁽⁰⁾ = KMeans_K( normalise(f_0(X)) )
    stage s:  SimCLR on batches of one pseudo-label y⁽ˢ⁻¹⁾ = Σ_{t<s} c⁽ᵗ⁾ K^{s−1−t}
              c⁽ˢ⁾ = KMeans_K( normalise(f_s(X)) )
    result:   h(x) = [f_0(x); …; f_{S−1}(x)]        (cross-stage integration)

Each stage starts from a fresh initialisation (seeded by run seed and stage), as the official
CLIP recipe starts every stage from the same pretrained weights. With one stage this is plain
SimCLR. With ``ensemble=True`` every stage trains on one pseudo-label (plain SimCLR negatives):
the stages are then S independently seeded SimCLR encoders (seeds ``seed + 1000·s``), integrated
the same way: the control that isolates MCL's feature-aware negatives from the concatenation.
Each stage has its own run folder (``stage<s>/``) with the engine's checkpoint, the pseudo-labels
it trained on and its cluster labels, so ``--resume`` continues mid-stage.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from methods.mcl.clustering import combine_pseudo_labels, kmeans_labels, official_pseudo_labels
from shared.distributed import is_distributed, is_main_process
from shared.engine import DataSource, FitResult, TrainConfig, fit


@dataclass(frozen=True)
class StagePlan:
    """How many stages, K, single-label groups per step, and which pseudo-label rule.

    ``ensemble``: no pseudo-labels at all (every stage is plain SimCLR); the SimCLR-ensemble control.
    """

    num_stages: int = 3
    num_clusters: int = 8
    groups: int = 1
    official_label_bug: bool = False
    ensemble: bool = False

    def __post_init__(self) -> None:
        if not (isinstance(self.num_stages, int) and self.num_stages >= 1):
            raise ValueError(f"num_stages must be a positive integer, got {self.num_stages!r}")
        if not (isinstance(self.num_clusters, int) and self.num_clusters >= 1):
            raise ValueError(f"num_clusters must be a positive integer, got {self.num_clusters!r}")
        if not (isinstance(self.groups, int) and self.groups >= 1):
            raise ValueError(f"groups must be a positive integer, got {self.groups!r}")

    def pseudo_labels(self, stage_clusters: list[torch.Tensor], n: int) -> torch.Tensor:
        """The labels stage ``len(stage_clusters)`` trains on (stage 0, and every stage of an ensemble: one label)."""
        if not stage_clusters or self.ensemble:
            return torch.zeros(n, dtype=torch.long)
        combine = official_pseudo_labels if self.official_label_bug else combine_pseudo_labels
        return combine(stage_clusters, self.num_clusters)


def stage_seed(seed: int, stage: int) -> int:
    """The seed of stage ``stage`` of paired seed ``seed`` (an ensemble member's too): ``seed + 1000·stage``.

    Initialisation and data order of the stage; distinct for every (seed, stage) while seeds stay below 1000.
    """
    return seed + 1000 * stage


@dataclass
class StageRecord:
    backbone: nn.Module
    pseudo_labels: torch.Tensor
    clusters: torch.Tensor
    fit: FitResult
    steps_per_epoch: int
    dropped_per_epoch: int


@dataclass
class MCLRun:
    stages: list[StageRecord] = field(default_factory=list)

    @property
    def backbones(self) -> list[nn.Module]:
        return [s.backbone for s in self.stages]

    def curve(self) -> list[dict]:
        """The stages' training logs end to end, with a running ``step`` and the ``stage``."""
        out, offset = [], 0
        for s, rec in enumerate(self.stages):
            out += [{**p, "step": p["step"] + offset, "stage": s} for p in rec.fit.history]
            offset += rec.fit.steps
        return out


def _stage_key(key: dict, stage: int, pseudo: torch.Tensor) -> str:
    blob = json.dumps({**key, "stage": stage}, sort_keys=True, default=str).encode() + pseudo.numpy().tobytes()
    return hashlib.sha256(blob).hexdigest()[:16]


def train_stages(
    num_samples: int,
    plan: StagePlan,
    build_model: Callable[[int], nn.Module],
    train_config: Callable[[int], TrainConfig],
    make_source: Callable[[torch.Tensor, int, int], DataSource],
    encode: Callable[[nn.Module], torch.Tensor],
    run_dir: str | Path,
    seed: int,
    resume: bool = False,
    key: dict | None = None,
    reuse_dir: str | Path | None = None,
    desc: str = "mcl",
) -> MCLRun:
    """Run every stage of ``plan`` on a training set of ``num_samples``; returns the stages' records.

    ``make_source(pseudo_labels, batch_size, groups)`` is the stage's data source
    (:class:`methods.mcl.sampler.ClusterBatches` or ``LoaderClusterBatches``); ``encode(backbone)``
    gives the (N, d) training-set features to cluster. ``build_model(stage)`` returns a fresh
    :class:`methods.mcl.model.StageSimCLR` (called after seeding with :func:`stage_seed`);
    ``train_config(stage)`` its engine config. ``key`` (the arm's configuration, JSON-able) and
    the stage's pseudo-labels identify a stage: a finished stage with the same identity under
    ``reuse_dir`` (another arm's run folder of this seed) is copied instead of retrained — the
    official-label-bug arm shares its first stages with MCL.
    """
    run_dir = Path(run_dir)
    key = key or {}
    result = MCLRun()
    clusters: list[torch.Tensor] = []
    n = num_samples
    for s in range(plan.num_stages):
        pseudo = plan.pseudo_labels(clusters, n)
        stage_dir = run_dir / f"stage{s}"
        ident = _stage_key(key, s, pseudo)
        reused = _maybe_reuse(reuse_dir, stage_dir, s, ident) if reuse_dir is not None else False
        _barrier()  # a copied stage is on disk before any rank resumes from it
        torch.manual_seed(stage_seed(seed, s))
        model = build_model(s)
        source = make_source(pseudo, train_config(s).batch_size, plan.groups)
        fitted = fit(model, source, train_config(s), stage_dir, resume=resume or reused, desc=f"{desc} stage {s}")
        backbone = model.backbone
        cluster_file = stage_dir / "clusters.pt"
        if not ((resume or reused) and cluster_file.exists()):
            feats = encode(backbone)  # every rank runs the forward passes (DDP-safe)
            if is_main_process():  # one K-means, read back by every rank: identical labels everywhere
                torch.save(kmeans_labels(feats, plan.num_clusters, seed=seed * 1000 + s), cluster_file)
                (stage_dir / "stage.json").write_text(json.dumps({"ident": ident}))
            _barrier()
        c = torch.load(cluster_file)
        clusters.append(c)
        result.stages.append(
            StageRecord(backbone, pseudo, c, fitted, source.steps_per_epoch(1), source.sampler.dropped)
        )
    return result


def _barrier() -> None:
    if is_distributed():
        torch.distributed.barrier()


def _maybe_reuse(reuse_dir: str | Path, stage_dir: Path, stage: int, ident: str) -> bool:
    """Copy ``reuse_dir/stage<s>`` into ``stage_dir`` when it is a finished stage of the same identity."""
    src = Path(reuse_dir) / f"stage{stage}"
    meta = src / "stage.json"
    if not (meta.exists() and (src / "clusters.pt").exists() and (src / "checkpoint.pt").exists()):
        return False
    if json.loads(meta.read_text()).get("ident") != ident:
        return False
    if is_main_process():
        if stage_dir.exists():
            shutil.rmtree(stage_dir)
        shutil.copytree(src, stage_dir)
    return True
