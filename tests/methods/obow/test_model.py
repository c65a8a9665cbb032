"""The OBoW step: teacher (no gradient, cosine EMA), views, patches, backbone levels, resume."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from methods.obow import OBoW, build_model, cosine_momentum, cut_patches, level_dims, level_maps, teacher_view
from methods.obow.experiments import SMOKE_ARMS
from shared.backbones import SmallConvNet, imagenet_resnet
from shared.data import make_shapes
from shared.engine import InMemoryBatches, TrainConfig, fit


def tiny_obow(total_steps=10, **overrides):
    torch.manual_seed(0)
    cfg = {**SMOKE_ARMS["obow"], "widths": (4, 8, 8, 16), "num_words": 32, **overrides}
    return build_model(cfg, total_steps)


def images(n=8, seed=0):
    return torch.randint(0, 256, (n, 3, 32, 32), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def test_cosine_momentum_schedule():
    assert cosine_momentum(0, 100) == pytest.approx(0.99)
    assert cosine_momentum(100, 100) == pytest.approx(1.0)
    assert cosine_momentum(50, 100) == pytest.approx(0.995)
    assert cosine_momentum(500, 100) == pytest.approx(1.0)  # clamped after T
    values = [cosine_momentum(t, 100, 0.9) for t in range(101)]
    assert all(a <= b for a, b in itertools.pairwise(values))
    with pytest.raises(ValueError, match="total_steps"):
        cosine_momentum(0, 0)
    with pytest.raises(ValueError, match="momentum"):
        cosine_momentum(0, 10, 1.5)


def test_teacher_gets_no_gradient_and_follows_the_ema():
    model = tiny_obow()
    assert all(not p.requires_grad for p in model.teacher.parameters())
    out = model({"images": images()})
    assert torch.isfinite(out["loss"]) and out["loss"].ndim == 0
    assert {"perp_b_l0", "perp_i_l0", "perp_b_l1", "perp_i_l1"} <= set(out)
    out["loss"].backward()
    assert all(p.grad is None for p in model.teacher.parameters())
    assert model.backbone.features[0].weight.grad is not None
    assert all(p.grad is not None for p in model.predictor.parameters())
    # a student step, then the EMA with α_{step+1}
    with torch.no_grad():
        for p in model.backbone.parameters():
            p.add_(0.1)
    teacher_before = {n: p.clone() for n, p in model.teacher.named_parameters()}
    student = dict(model.backbone.named_parameters())
    model.after_step(0)
    alpha = cosine_momentum(1, 10)
    for n, p in model.teacher.named_parameters():
        assert torch.allclose(p, alpha * teacher_before[n] + (1 - alpha) * student[n]), n
    # α = 1 at the end of the schedule: the teacher no longer moves
    frozen = {n: p.clone() for n, p in model.teacher.named_parameters()}
    model.after_step(9)
    assert all(torch.equal(frozen[n], p) for n, p in model.teacher.named_parameters())


def test_vocabulary_moves_by_one_word_per_image_per_level():
    model = tiny_obow()
    model({"images": images(8)})
    assert [int(e.queue.ptr) for e in model.extractors] == [8, 8]
    assert [e.dim for e in model.extractors] == [8, 16]  # the last two blocks' channels


def test_precomputed_views_and_vanilla():
    model = tiny_obow(levels=(-1,), crops=((1, 24, (0.08, 0.6)),), num_patches=0)
    assert model.patch_augment is None and len(model.extractors) == 1
    assert torch.isfinite(model({"images": images()})["loss"])
    full = tiny_obow()
    batch = {"teacher": torch.randn(8, 3, 32, 32), "crops": [torch.randn(8, 3, 24, 24)] * 2, "patches": []}
    assert torch.isfinite(full(batch)["loss"])
    with pytest.raises(ValueError, match="no 'teacher'"):
        OBoW(SmallConvNet(3, (4, 8), num_pools=0), num_words=8)({"images": images()})


def test_teacher_view_flips_only():
    x = images(64)
    v = teacher_view(x, (0.5,) * 3, (0.5,) * 3)
    plain = x.float() / 255 * 2 - 1
    same = (v == plain).flatten(1).all(1)
    flipped = (v == plain.flip(-1)).flatten(1).all(1)
    assert (same | flipped).all() and same.any() and flipped.any()


def test_patches_come_from_a_jittered_grid():
    x = torch.arange(32 * 32, dtype=torch.float32).view(1, 1, 32, 32).repeat(4, 1, 1, 1)
    patches = cut_patches(x, patch_size=12, jitter=3, num_patches=5)
    assert len(patches) == 5 and all(p.shape == (4, 1, 12, 12) for p in patches)
    step = (32 - 12 - 3) // 2
    for p in patches:
        for b in range(4):
            top, left = divmod(int(p[b, 0, 0, 0]), 32)
            assert torch.equal(p[b, 0], x[b, 0, top : top + 12, left : left + 12])  # a contiguous window
            cell = (top // step if top < 3 * step else 2, left // step if left < 3 * step else 2)
            assert 0 <= top - cell[0] * step <= 3 and 0 <= left - cell[1] * step <= 3
    # the 5 patches of an image are 5 distinct grid cells
    corners = torch.stack([p[:, 0, 0, 0] for p in patches], 1)
    assert all(len(set(row.tolist())) == 5 for row in corners)
    with pytest.raises(ValueError, match="do not fit"):
        cut_patches(x, patch_size=30, jitter=3, num_patches=5)
    with pytest.raises(ValueError, match="num_patches"):
        cut_patches(x, patch_size=12, jitter=3, num_patches=10)


def test_backbone_levels():
    net = SmallConvNet(1, (4, 8, 16, 32), num_pools=2)
    assert level_dims(net, (-2, -1)) == [16, 32]
    maps = level_maps(net, torch.randn(2, 1, 28, 28), (-2, -1))
    assert [tuple(m.shape) for m in maps] == [(2, 16, 7, 7), (2, 32, 7, 7)]
    resnet = imagenet_resnet(18)
    assert level_dims(resnet, (-2, -1)) == [256, 512]
    maps = level_maps(resnet, torch.randn(2, 3, 64, 64), (-2, -1))
    assert [tuple(m.shape) for m in maps] == [(2, 256, 4, 4), (2, 512, 2, 2)]
    with pytest.raises(ValueError, match="levels"):
        level_dims(net, (4,))
    with pytest.raises(TypeError, match="feature maps"):
        level_dims(torch.nn.Linear(2, 2), (-1,))


def test_resume_equals_uninterrupted(tmp_path):
    """Stop after 3 of 4 steps (mid-epoch), resume: same student, teacher, vocabularies and d̄ as one run."""
    data = make_shapes(4, 32, seed=0)  # 48 images, batch 24: 2 steps per epoch
    cfg = TrainConfig(epochs=2, batch_size=24, lr=0.05, seed=1, progress=False)

    def state(m):
        return {k: v for k, v in m.state_dict().items() if v.is_floating_point() or k.endswith("ptr")}

    full = tiny_obow(total_steps=4, num_words=48)
    fit(full, InMemoryBatches(data, 24), cfg, tmp_path / "full")
    part = tiny_obow(total_steps=4, num_words=48)
    fit(part, InMemoryBatches(data, 24), TrainConfig(**{**cfg.__dict__, "max_steps": 3}), tmp_path / "part")
    resumed = tiny_obow(total_steps=4, num_words=48)
    assert fit(resumed, InMemoryBatches(data, 24), cfg, tmp_path / "part", resume=True).steps == 4
    a, b = state(full), state(resumed)
    assert a.keys() == b.keys() and any("extractors.1.queue.queue" in k for k in a)
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_build_model_errors():
    with pytest.raises(ValueError, match="unknown method"):
        build_model({**SMOKE_ARMS["obow"], "method": "byol"})
    with pytest.raises(ValueError, match="3×3"):  # the last block at 2×2: no border crop possible
        tiny_obow(num_pools=3)({"images": images()})


def test_crop_rows_are_compared_with_the_target_of_their_own_image():
    """Crop-major rows: row v·B + b of a crop type is crop v of image b, and its prediction meets y(b).

    With the student's BatchNorm in eval mode (so a crop's feature does not depend on its batch), the
    step's loss (float64) equals, per crop type and level, the mean over crops v and images b of
    KL(y_l(b) ‖ softmax(κ s(crop v of b) W_lᵀ)) with s computed from that crop alone; summed over crop
    types, averaged over levels. Pairing crops with the targets of other images gives another value.
    The weight generators run once for the step.
    """
    model = tiny_obow().double()
    model.backbone.eval()
    b, gen = 4, torch.Generator().manual_seed(0)

    def views(n, size):
        return [torch.randn(b, 3, size, size, generator=gen, dtype=torch.float64) for _ in range(n)]

    batch = {"teacher": views(1, 32)[0], "crops": views(2, 24), "patches": views(3, 12)}
    with torch.no_grad():
        weights = model.predictor.weights([e.vocabulary() for e in model.extractors])
        types = (batch["crops"], batch["patches"])
        alone = [[[model.backbone(view[i : i + 1])[0] for i in range(b)] for view in views_] for views_ in types]
    targets, generator_calls = [], []
    hooks = [e.register_forward_hook(lambda m, i, o: targets.append(o)) for e in model.extractors]
    hooks += [g.register_forward_hook(lambda m, i, o: generator_calls.append(1)) for g in model.predictor.generators]
    loss = model(batch)["loss"].item()
    for h in hooks:
        h.remove()
    assert len(generator_calls) == 2  # one pass per level for the step, not one per level and crop type

    def expected(image_of):
        total = 0.0
        for crops in alone:  # crop types
            per_level = []
            for y, w in zip(targets, weights, strict=True):
                kl = []
                for v, crop in enumerate(crops):
                    for i, s in enumerate(crop):
                        log_q = F.log_softmax(model.predictor.kappa * s @ w.T, dim=0)
                        target = y[image_of(v, i)]
                        kl.append(float((torch.special.xlogy(target, target) - target * log_q).sum()))
                per_level.append(sum(kl) / len(kl))
            total += sum(per_level) / len(per_level)
        return total

    assert loss == pytest.approx(expected(lambda v, i: i), abs=1e-10)
    assert abs(loss - expected(lambda v, i: (i + v + 1) % b)) > 1e-4  # crops scored against other images
