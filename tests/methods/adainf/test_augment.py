"""AdaInf's augmentation strengths: the official yaml values, what changes, and that weak is weaker."""

import pytest
import torch

from methods.adainf import ASYMMETRIC, ASYMMETRIC_ADAINF, STRENGTHS, SYMMETRIC, SYMMETRIC_ADAINF, strength
from shared.augment import BatchedSimCLRAugment


def test_values_match_the_official_yamls():
    # solo-learn/scripts/pretrain/cifar/augmentations/{symmetric,symmetric_adainf,asymmetric,asymmetric_adainf}.yaml
    assert (SYMMETRIC.crop_min_scale, SYMMETRIC.jitter_p, SYMMETRIC.jitter) == (0.08, 0.8, (0.8, 0.8, 0.8, 0.2))
    assert (SYMMETRIC_ADAINF.crop_min_scale, SYMMETRIC_ADAINF.jitter_p) == (0.2, 0.4)
    assert SYMMETRIC_ADAINF.jitter == (0.4, 0.4, 0.4, 0.1)
    for aug in (SYMMETRIC, SYMMETRIC_ADAINF):  # one view, both views alike
        assert (aug.grayscale_p, aug.blur_p, aug.flip_p, aug.solarize_p) == (0.2, 0.5, 0.5, 0.0)  # unchanged
    # the asymmetric yamls list two views: no blur in either, solarisation 0.2 on the second only
    for views, (crop, jitter_p) in ((ASYMMETRIC, (0.08, 0.8)), (ASYMMETRIC_ADAINF, (0.2, 0.4))):
        assert len(views) == 2
        for view, solarize_p in zip(views, (0.0, 0.2), strict=True):
            assert (view.crop_min_scale, view.jitter_p, view.jitter) == (crop, jitter_p, (0.4, 0.4, 0.2, 0.1))
            assert (view.grayscale_p, view.blur_p, view.flip_p, view.solarize_p) == (0.2, 0.0, 0.5, solarize_p)
    assert STRENGTHS == {"strong": SYMMETRIC, "weak": SYMMETRIC_ADAINF}


def test_weak_differs_from_strong_exactly_as_stated():
    strong, weak = strength("strong"), strength("weak")
    assert weak.crop_min_scale > strong.crop_min_scale and weak.jitter_p == strong.jitter_p / 2
    assert all(w == pytest.approx(s / 2) for w, s in zip(weak.jitter, strong.jitter, strict=True))
    cs = strong.to_config(28, (0.5,), (0.5,))
    cw = weak.to_config(28, (0.5,), (0.5,))
    assert cs.jitter == pytest.approx(strong.jitter) and cw.jitter == pytest.approx(weak.jitter)
    assert (cs.crop_scale, cw.crop_scale) == ((0.08, 1.0), (0.2, 1.0))
    assert (cs.jitter_p, cw.jitter_p) == (0.8, 0.4)
    same = ("image_size", "crop_ratio", "flip_p", "grayscale_p", "blur_p", "mean", "std")
    assert all(getattr(cs, k) == getattr(cw, k) for k in same)


def test_weak_views_stay_closer_to_the_image():
    """Measured: a weak view differs less from the un-augmented image than a strong one."""
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(256, 3, 16, 16, generator=g) * 255).to(torch.uint8)
    x = torch.nn.functional.avg_pool2d(x.float(), 3, 1, 1).to(torch.uint8)  # some spatial structure
    plain = x.float() / 255
    dist = {}
    for name in ("strong", "weak"):
        aug = BatchedSimCLRAugment(strength(name).to_config(16, (0.0,) * 3, (1.0,) * 3))
        dist[name] = (aug(x, torch.Generator().manual_seed(1)) - plain).abs().mean().item()
    assert dist["weak"] < 0.9 * dist["strong"]


def test_errors():
    with pytest.raises(ValueError, match="unknown augmentation strength"):
        strength("medium")
    with pytest.raises(ValueError, match="not of the form"):
        ASYMMETRIC[0].to_config(32, (0.5,), (0.5,))
    with pytest.raises(ValueError, match="solarisation"):
        ASYMMETRIC_ADAINF[1].to_config(32, (0.5,), (0.5,))
