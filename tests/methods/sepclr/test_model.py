"""SepCLR's model and data: two encoders, un-normalised salient heads, the background / target sets."""

import pytest
import torch

from methods.sepclr import (
    ContrastiveSet,
    GroupBatches,
    GroupSimCLR,
    SepCLR,
    SepCLRLoss,
    SplitSimCLR,
    cifar_mnist_from_arrays,
    sklearn_digits,
)
from methods.sepclr.data import DIGIT_TRAIN_POOL, blend, make_contrastive_set
from methods.sepclr.experiments import SMOKE_ARM, build_model, probe_matrix, space_features
from shared.backbones import SmallConvNet
from shared.data.arrays import ImageArrays
from shared.losses import InfoNCELoss, info_nce_loss


def tiny_sepclr(**kwargs):
    return SepCLR(SmallConvNet(1, (4, 8)), SmallConvNet(1, (4, 8)), SepCLRLoss(), 3, 2, 8, **kwargs)


def test_forward_returns_the_loss_and_its_terms():
    torch.manual_seed(0)
    model = tiny_sepclr()
    x = torch.randn(6, 1, 12, 12)
    out = model({"views": (x, x.flip(-1)), "labels": torch.tensor([0, 1, 0, 1, 1, 0])})
    assert set(out) == {"loss", "common", "salient", "reg", "jem"}
    out["loss"].backward()
    assert model.common_encoder[0].features[0].weight.grad is not None
    assert model.salient_encoder[0].features[0].weight.grad is not None
    c, s = model.representations(x)
    assert c.shape == (6, 3) and s.shape == (6, 2)


def test_encoders_are_separate_and_salient_null_vector_reachable():
    model = tiny_sepclr()
    assert model.common_encoder[0] is not model.salient_encoder[0]
    assert {id(p) for p in model.common_encoder.parameters()}.isdisjoint(
        id(p) for p in model.salient_encoder.parameters()
    )
    with torch.no_grad():  # an un-normalised head can output exactly the null vector
        model.salient_projector[-1].weight.zero_()
        model.salient_projector[-1].bias.zero_()
    model.eval()
    _, s = model.heads(torch.randn(4, 1, 12, 12))
    assert torch.equal(s, torch.zeros_like(s))


def test_model_errors():
    x = torch.randn(4, 1, 12, 12)
    with pytest.raises(ValueError, match="labels"):
        tiny_sepclr()({"views": (x, x)})
    with pytest.raises(ValueError, match="no 'views'"):
        tiny_sepclr()({"images": x, "labels": torch.tensor([0, 1, 0, 1])})
    with pytest.raises(ValueError, match="common_dim"):
        SepCLR(SmallConvNet(1, (4, 8)), SmallConvNet(1, (4, 8)), SepCLRLoss(), common_dim=0)


def test_simclr_split_halves():
    model = build_model({**SMOKE_ARM, "method": "simclr_split"})
    assert isinstance(model, SplitSimCLR)
    c, s = model.representations(torch.randn(3, 1, 28, 28))
    assert c.shape == (3, SMOKE_ARM["common_dim"]) and s.shape == (3, SMOKE_ARM["salient_dim"])
    out = model({"images": torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)})
    assert set(out) == {"loss"}


def test_blend_and_contrastive_set():
    base = ImageArrays(torch.full((4, 1, 6, 6), 200, dtype=torch.uint8), torch.arange(4), tuple("abcd"))
    digits = torch.zeros(3, 1, 6, 6, dtype=torch.uint8)
    digits[:, :, 2, 2] = 255
    data = make_contrastive_set(base, digits, torch.tensor([7, 8, 9]), 0.5, seed=0)
    assert data.group.tolist() == [0, 0, 1, 1]
    assert (data.images[:2] == 100).all()  # 0.5 · background
    assert (data.images[2:, :, 2, 2] == 228).all() and (data.images[2:, :, 0, 0] == 100).all()  # + 0.5 · digit
    assert data.salient[:2].tolist() == [-1, -1] and set(data.salient[2:].tolist()) <= {7, 8, 9}
    assert data.training_arrays().classes == ("background", "target")
    assert len(data.targets()) == 2 and len(data.backgrounds()) == 2
    with pytest.raises(ValueError, match="target_fraction"):
        make_contrastive_set(base, digits, torch.tensor([7, 8, 9]), 1.0, seed=0)
    with pytest.raises(ValueError, match="digit size"):
        blend(base.images, torch.zeros(1, 1, 5, 5, dtype=torch.uint8))
    with pytest.raises(ValueError, match="no salient label"):
        ContrastiveSet(data.images, data.group, data.common, torch.zeros(4, dtype=torch.long))


def test_official_cifar_mnist_construction_on_fake_arrays():
    cifar = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    mnist = torch.zeros(6, 1, 28, 28, dtype=torch.uint8)
    mnist[:, :, 0, 0] = 254
    data = cifar_mnist_from_arrays(cifar, torch.arange(6), mnist, torch.arange(10, 16))
    assert data.images.shape == (6, 3, 32, 32)
    assert data.group.tolist() == [0, 0, 0, 1, 1, 1] and data.salient.tolist() == [-1, -1, -1, 13, 14, 15]
    expected = (0.5 * cifar[3:, :, 2, 2].float() + 127).round()  # digit pixel (0, 0) lands at (2, 2)
    assert torch.equal(data.images[3:, :, 2, 2].float(), expected.clamp(max=255))
    assert torch.equal(data.images[:3].float(), (0.5 * cifar[:3].float()).round())


def test_sklearn_digits_and_disjoint_pools():
    digits, labels = sklearn_digits(28)
    assert digits.shape == (1797, 1, 28, 28) and digits.dtype == torch.uint8
    assert (digits[:, :, :4] == 0).all() and (digits[:, :, -4:] == 0).all()  # 20 px digit centred, like MNIST
    assert set(labels[:DIGIT_TRAIN_POOL].tolist()) == set(range(10)) == set(labels[DIGIT_TRAIN_POOL:].tolist())


def test_probe_matrix_reads_each_space():
    torch.manual_seed(0)
    n = 200
    common, salient = torch.arange(n) % 4, (torch.arange(n) // 4) % 3
    data = ContrastiveSet(torch.zeros(n, 1, 2, 2, dtype=torch.uint8), torch.ones(n, dtype=torch.long), common, salient)
    feats = {"c": torch.nn.functional.one_hot(common).float(), "s": torch.nn.functional.one_hot(salient).float()}
    m = probe_matrix(feats, data, feats, data)
    assert m["c_on_common"] == 1.0 and m["s_on_salient"] == 1.0
    assert m["c_on_salient"] < 0.5 and m["s_on_common"] < 0.5


def test_space_features_shapes_and_mode():
    model = build_model({**SMOKE_ARM, "method": "sepclr"})
    model.train()
    f = space_features(model, torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8), SMOKE_ARM, batch_size=2)
    assert f["c"].shape == (5, SMOKE_ARM["common_dim"]) and f["s"].shape == (5, SMOKE_ARM["salient_dim"])
    assert f["s_head_norm"].shape == (5,) and model.training


def tiny_group_simclr():
    return GroupSimCLR(SmallConvNet(1, (4, 8)), SmallConvNet(1, (4, 8)), InfoNCELoss(0.5), 3, 2, 8)


def encoder_grads(model, batch):
    model.zero_grad()
    model(batch)["loss"].backward()
    grads = {}
    for name in ("common", "salient"):
        params = [*getattr(model, f"{name}_encoder").parameters(), *getattr(model, f"{name}_projector").parameters()]
        grads[name] = [p.grad.clone() for p in params]
    return grads


def test_group_simclr_is_two_simclr_runs_one_per_group():
    """The loss is InfoNCE of the common heads on the background rows plus InfoNCE of the salient heads on the
    target rows; the common encoder's gradient does not depend on the target images, nor the salient one's on
    the background images."""
    torch.manual_seed(0)
    model = tiny_group_simclr()
    g = torch.Generator().manual_seed(1)
    x1, x2 = torch.randn(8, 1, 12, 12, generator=g), torch.randn(8, 1, 12, 12, generator=g)
    labels = torch.tensor([0, 1, 1, 0, 0, 1, 0, 1])
    out = model({"views": (x1, x2), "labels": labels})
    assert set(out) == {"loss", "common", "salient"}
    bg, tgt = labels == 0, labels == 1
    with torch.no_grad():  # restated: each encoder on its own rows only (BatchNorm included)
        c = model.common_projector(model.common_encoder(torch.cat([x1[bg], x2[bg]])))
        s = model.salient_projector(model.salient_encoder(torch.cat([x1[tgt], x2[tgt]])))
        want_c, want_s = info_nce_loss(*c.chunk(2), 0.5), info_nce_loss(*s.chunk(2), 0.5)
    assert out["common"].item() == pytest.approx(want_c.item(), abs=1e-6)
    assert out["salient"].item() == pytest.approx(want_s.item(), abs=1e-6)
    assert out["loss"].item() == pytest.approx((want_c + want_s).item(), abs=1e-6)
    base = encoder_grads(model, {"views": (x1, x2), "labels": labels})
    noise = torch.randn(8, 1, 12, 12, generator=g)
    new_tgt = encoder_grads(model, {"views": (torch.where(tgt[:, None, None, None], noise, x1), x2), "labels": labels})
    new_bg = encoder_grads(model, {"views": (torch.where(bg[:, None, None, None], noise, x1), x2), "labels": labels})
    assert all(torch.equal(a, b) for a, b in zip(base["common"], new_tgt["common"], strict=True))
    assert all(torch.equal(a, b) for a, b in zip(base["salient"], new_bg["salient"], strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(base["salient"], new_tgt["salient"], strict=True))
    c_rep, s_rep = model.representations(x1)
    assert c_rep.shape == (8, 3) and s_rep.shape == (8, 2)
    with pytest.raises(ValueError, match="at least 2 target"):
        model({"views": (x1, x2), "labels": torch.tensor([0, 0, 0, 0, 0, 0, 0, 1])})
    with pytest.raises(ValueError, match="labels"):
        model({"views": (x1, x2)})


def test_group_batches_half_background_half_target():
    n = 40
    data = ContrastiveSet(
        torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous(),
        (torch.arange(n) >= 16).long(),  # 16 background, 24 target
        torch.zeros(n, dtype=torch.long),
        torch.where(torch.arange(n) >= 16, 0, -1),
    )
    source = GroupBatches(data, 8)
    assert source.steps_per_epoch(1) == 16 // 4  # the smaller group sets the epoch
    steps = list(source.epoch(0, seed=3, rank=0, world_size=1))
    assert len(steps) == 4
    seen = {0: [], 1: []}
    for b in steps:
        ids = b["images"][:, 0, 0, 0].long()
        assert torch.equal(b["labels"], torch.tensor([0] * 4 + [1] * 4))
        assert (ids[:4] < 16).all() and (ids[4:] >= 16).all()  # the labels are the images' groups
        seen[0] += ids[:4].tolist()
        seen[1] += ids[4:].tolist()
    assert len(set(seen[0])) == 16 and len(set(seen[1])) == 16  # each image at most once per epoch
    # two ranks: the union of their slices is the single-process step
    ranks = [list(source.epoch(0, 3, r, 2)) for r in range(2)]
    for step, (a, b) in enumerate(zip(*ranks, strict=True)):
        union = torch.cat([a["images"][:2], b["images"][:2], a["images"][2:], b["images"][2:]])
        assert torch.equal(union, steps[step]["images"])
    with pytest.raises(ValueError, match="even"):
        GroupBatches(data, 7)
    with pytest.raises(ValueError, match="smaller group"):
        GroupBatches(data, 40)
