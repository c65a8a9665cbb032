"""The training loop: resume equals uninterrupted, NaN guard, batch sharding, learning."""

import json

import pytest
import torch
from torch import nn

from shared.augment import AugmentConfig, BatchedSimCLRAugment
from shared.backbones import SmallConvNet
from shared.data import make_shapes
from shared.engine import InMemoryBatches, NonFiniteLossError, TrainConfig, fit
from shared.heads import mlp_head
from shared.losses import InfoNCELoss
from shared.ssl import TwoViewContrastive


def tiny_simclr() -> TwoViewContrastive:
    torch.manual_seed(0)
    backbone = SmallConvNet(3, widths=(8, 16))
    aug = BatchedSimCLRAugment(AugmentConfig(image_size=32, mean=(0.5,) * 3, std=(0.5,) * 3))
    return TwoViewContrastive(backbone, mlp_head(16, 16, 8), InfoNCELoss(0.2), aug)


@pytest.fixture(scope="module")
def shapes():
    return make_shapes(8, 32, seed=0)  # 96 images


def params(model):
    return torch.cat([p.detach().flatten() for p in model.state_dict().values() if p.is_floating_point()])


def test_resume_equals_uninterrupted(tmp_path, shapes):
    cfg = TrainConfig(
        epochs=3, batch_size=16, lr=0.05, optimizer="sgd", seed=3, progress=False, checkpoint_every=4, warmup_epochs=1
    )
    full = tiny_simclr()
    fit(full, InMemoryBatches(shapes, 16), cfg, tmp_path / "full")
    # interrupted after 10 steps (mid-epoch: 6 steps per epoch), then resumed
    part = tiny_simclr()
    stop = TrainConfig(**{**cfg.__dict__, "max_steps": 10})
    fit(part, InMemoryBatches(shapes, 16), stop, tmp_path / "part")
    state = torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=False)
    assert state["step"] == 10
    resumed = tiny_simclr()
    result = fit(resumed, InMemoryBatches(shapes, 16), cfg, tmp_path / "part", resume=True)
    assert result.steps == 18
    assert torch.equal(params(resumed), params(full))


def test_different_seeds_differ(tmp_path, shapes):
    a, b = tiny_simclr(), tiny_simclr()
    for model, seed in ((a, 0), (b, 1)):
        fit(
            model,
            InMemoryBatches(shapes, 16),
            TrainConfig(epochs=1, batch_size=16, lr=0.05, seed=seed, progress=False),
            tmp_path / f"s{seed}",
        )
    assert not torch.equal(params(a), params(b))


class ExplodingLoss(nn.Module):
    def __init__(self, at_step: int) -> None:
        super().__init__()
        self.calls, self.at_step = 0, at_step

    def forward(self, z1, z2):
        self.calls += 1
        loss = (z1 - z2).pow(2).mean()
        return loss * float("nan") if self.calls > self.at_step else loss


def test_nan_guard_names_step_and_keeps_last_good_checkpoint(tmp_path, shapes):
    model = tiny_simclr()
    model.loss = ExplodingLoss(at_step=7)
    cfg = TrainConfig(epochs=5, batch_size=16, lr=0.05, seed=0, progress=False)
    with pytest.raises(NonFiniteLossError, match="at step 7 "):
        fit(model, InMemoryBatches(shapes, 16), cfg, tmp_path)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert state["step"] == 6  # the end of epoch 1, the last good one
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_metrics_jsonl_and_eval(tmp_path, shapes):
    model = tiny_simclr()
    cfg = TrainConfig(epochs=2, batch_size=16, lr=0.05, seed=0, progress=False, log_every=3, eval_every=1)
    result = fit(model, InMemoryBatches(shapes, 16), cfg, tmp_path, evaluate=lambda m: {"score": 1.0})
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if "step" in r and "eval" not in r] == [3, 6, 9, 12]
    assert [e["epoch"] for e in result.evaluations] == [1, 2]


def test_sharding_covers_the_global_batch(shapes):
    src = InMemoryBatches(shapes, 16)
    single = [b["index"] for b in src.epoch(0, seed=1, rank=0, world_size=1)]
    r0 = [b["index"] for b in src.epoch(0, seed=1, rank=0, world_size=2)]
    r1 = [b["index"] for b in src.epoch(0, seed=1, rank=1, world_size=2)]
    for s, a, b in zip(single, r0, r1, strict=True):
        assert torch.equal(torch.cat([a, b]), s)
    with pytest.raises(ValueError, match="divisible"):
        next(iter(src.epoch(0, 0, 0, world_size=3)))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"epochs": -1}, "epochs"), ({"batch_size": 1}, "batch_size"), ({"lr": 0}, "lr")],
)
def test_config_errors(kwargs, match):
    base = {"epochs": 1, "batch_size": 8, "lr": 0.1}
    with pytest.raises(ValueError, match=match):
        TrainConfig(**{**base, **kwargs})


def test_batch_larger_than_data(shapes):
    with pytest.raises(ValueError, match="exceeds"):
        InMemoryBatches(shapes, 1000)


class ViewsDataset(torch.utils.data.Dataset):
    """Per-item two-view dataset, as the hub road yields (DataLoader collation of tuples)."""

    def __init__(self, n: int = 24) -> None:
        self.data = make_shapes(2, 32, seed=5)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> dict:
        x = self.data.images[i].float() / 255
        return {"views": (x, x.flip(-1)), "labels": int(self.data.labels[i])}


def test_loader_batches_feed_views_through_fit(tmp_path):
    from shared.engine import LoaderBatches

    model = tiny_simclr()
    model.augment = None  # views come from the dataset
    source = LoaderBatches(ViewsDataset(), batch_size=8, num_workers=0)
    batches = list(source.epoch(0, seed=0, rank=0, world_size=1))
    assert len(batches) == 3 and batches[0]["views"][0].shape == (8, 3, 32, 32)
    result = fit(model, source, TrainConfig(epochs=1, batch_size=8, lr=0.05, progress=False), tmp_path)
    assert result.steps == 3


def test_train_config_from_arm_reads_fields_and_overrides():
    from shared.engine import TrainConfig

    cfg = {"epochs": 6, "batch_size": 64, "lr": 0.3, "weight_decay": 1e-4, "bf16": True, "momentum": 0.999, "x": 1}
    tc = TrainConfig.from_arm(cfg, seed=3, epochs=None, progress=False, lr=0.3 * 64 / 256)
    assert (tc.epochs, tc.batch_size, tc.lr, tc.weight_decay, tc.bf16, tc.seed) == (6, 64, 0.075, 1e-4, True, 3)
    assert tc.momentum == 0.9  # an EMA momentum in the arm is not the optimiser's
    assert TrainConfig.from_arm(cfg, seed=0, epochs=2).epochs == 2
    with pytest.raises(ValueError, match="lr must be positive"):
        TrainConfig.from_arm({**cfg, "lr": 0.0}, seed=0)


def test_fit_result_final_metrics():
    from shared.engine import FitResult

    r = FitResult(steps=4, epochs_done=2, wall_seconds=1.0, evaluations=[{"epoch": 1, "step": 2, "acc": 0.1}])
    r.evaluations.append({"epoch": 2, "step": 4, "acc": 0.3, "nll": 1.2})
    assert r.final_metrics() == {"acc": 0.3, "nll": 1.2}
    with pytest.raises(ValueError, match="no evaluation"):
        FitResult(steps=1, epochs_done=1, wall_seconds=0.1).final_metrics()
