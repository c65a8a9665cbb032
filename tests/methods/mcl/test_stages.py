"""Cross-stage integration, the stage loop, and 'one stage + one cluster ≡ SimCLR' end to end."""

import pytest
import torch

from methods.mcl import ClusterBatches, IntegratedEncoder, StagePlan, StageSimCLR, build_stage_model, train_stages
from methods.mcl.experiments import SMOKE_ARM, to_group_norm
from shared.augment import to_model_input
from shared.data.arrays import ImageArrays
from shared.engine import InMemoryBatches, TrainConfig, fit
from shared.evaluation import extract_features
from shared.losses import InfoNCELoss
from shared.ssl import TwoViewContrastive

CFG = {**SMOKE_ARM, "widths": (8, 16), "head_hidden": 16, "head_out": 8}


def tiny_images(n=48, seed=0):
    return torch.randint(0, 255, (n, 3, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def preprocess(x):
    return to_model_input(x, 28, (0.2,) * 3, (0.3,) * 3)


def test_integrated_dimension_and_stage_slices():
    torch.manual_seed(0)
    backbones = [build_stage_model(CFG).backbone for _ in range(3)]
    enc = IntegratedEncoder(backbones).eval()
    x = preprocess(tiny_images(5))
    h = enc(x)
    assert enc.out_dim == 3 * 16 and h.shape == (5, 48)
    for s in range(3):
        assert torch.allclose(h[:, enc.stage_slice(s)], backbones[s](x))
        assert torch.allclose(enc.stage_features(x, s), backbones[s](x))
    assert enc.stage_slice(-1) == enc.stage_slice(2)
    with pytest.raises(ValueError, match="stage must be"):
        enc.stage_slice(3)
    with pytest.raises(ValueError, match="at least one"):
        IntegratedEncoder([])
    with pytest.raises(ValueError, match="same out_dim"):
        IntegratedEncoder([backbones[0], build_stage_model({**CFG, "widths": (8, 32)}).backbone])


@pytest.mark.parametrize("groups", [1, 2])
def test_one_stage_one_cluster_is_standard_simclr(tmp_path, groups):
    """MCL with one stage (one pseudo-label) trains exactly the weights of SimCLR with InfoNCE."""
    images = tiny_images()
    tc = TrainConfig(epochs=2, batch_size=16, lr=0.05, seed=3, progress=False, log_every=1)

    torch.manual_seed(3)
    ref = build_stage_model(CFG)
    simclr = TwoViewContrastive(ref.backbone, ref.projector, InfoNCELoss(CFG["temperature"]), ref.augment)
    data = ImageArrays(images, torch.zeros(len(images), dtype=torch.long), ("x",))
    ref_fit = fit(simclr, InMemoryBatches(data, 16), tc, tmp_path / "ref")

    run = train_stages(
        len(images),
        StagePlan(num_stages=1, num_clusters=2, groups=groups),
        build_model=lambda s: build_stage_model(CFG),
        train_config=lambda s: tc,
        make_source=lambda y, b, g: ClusterBatches(images, y, b, g),
        encode=lambda bb: extract_features(bb, images, preprocess),
        run_dir=tmp_path / "mcl",
        seed=3,
    )
    assert len(run.stages) == 1 and run.stages[0].pseudo_labels.unique().tolist() == [0]
    for a, b in zip(run.stages[0].backbone.state_dict().values(), simclr.backbone.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert [p["loss"] for p in run.curve()] == [p["loss"] for p in ref_fit.history]
    assert run.stages[0].clusters.shape == (len(images),)


def test_stages_train_on_combined_labels_resume_and_reuse(tmp_path):
    images = tiny_images(64)
    tc = TrainConfig(epochs=1, batch_size=8, lr=0.05, progress=False, log_every=1)
    kwargs = dict(
        build_model=lambda s: build_stage_model(CFG),
        train_config=lambda s: tc,
        make_source=lambda y, b, g: ClusterBatches(images, y, b, g),
        encode=lambda bb: extract_features(bb, images, preprocess),
        seed=0,
        key={"cfg": "x"},
    )
    plan = StagePlan(num_stages=3, num_clusters=2, groups=2)
    run = train_stages(len(images), plan, run_dir=tmp_path / "a", **kwargs)
    c0, c1 = run.stages[0].clusters, run.stages[1].clusters
    assert torch.equal(run.stages[1].pseudo_labels, c0)
    assert torch.equal(run.stages[2].pseudo_labels, c0 * 2 + c1)
    steps = [p["step"] for p in run.curve()]
    assert steps == sorted(steps) and {p["stage"] for p in run.curve()} == {0, 1, 2}
    # resume: finished stages are read back, not retrained
    again = train_stages(len(images), plan, run_dir=tmp_path / "a", resume=True, **kwargs)
    assert torch.equal(again.stages[2].pseudo_labels, run.stages[2].pseudo_labels)
    assert all(st.fit.wall_seconds < 1.0 for st in again.stages)
    # the official-label-bug plan shares stages 0 and 1 (same labels) and retrains only stage 2
    bug = StagePlan(num_stages=3, num_clusters=2, groups=2, official_label_bug=True)
    other = train_stages(len(images), bug, run_dir=tmp_path / "b", reuse_dir=tmp_path / "a", **kwargs)
    assert torch.equal(other.stages[1].clusters, c1)
    assert torch.equal(other.stages[2].pseudo_labels, c1 * 3)
    assert (tmp_path / "b" / "stage0" / "clusters.pt").exists()
    assert other.stages[0].fit.wall_seconds < 1.0 and other.stages[2].fit.wall_seconds > 0


def test_model_errors_and_group_norm():
    with pytest.raises(TypeError, match="ClusterInfoNCELoss"):
        StageSimCLR(torch.nn.Identity(), torch.nn.Identity(), InfoNCELoss())
    with pytest.raises(ValueError, match="norm"):
        build_stage_model({**CFG, "norm": "layer"})
    model = build_stage_model({**CFG, "norm": "group"})
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.backbone.modules())
    assert any(isinstance(m, torch.nn.GroupNorm) for m in to_group_norm(build_stage_model(CFG).backbone).modules())
    # without pseudo-labels the stage model is plain SimCLR
    out = model({"images": tiny_images(8)})
    assert out["loss"].ndim == 0 and torch.isfinite(out["loss"])
