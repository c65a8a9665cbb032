"""Batched SimCLR augmentation, the per-image pipeline, kNN and the linear probe."""

import pytest
import torch
import torch.nn.functional as F

from shared.augment import AugmentConfig, BatchedSimCLRAugment, simclr_transform
from shared.evaluation import knn_accuracy, knn_predict, linear_probe, loader_evaluator


def test_batched_augment_shapes_and_determinism():
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    aug = BatchedSimCLRAugment(AugmentConfig(image_size=24, blur_p=0.5, mean=(0.5,) * 3, std=(0.5,) * 3))
    a = aug(images, torch.Generator().manual_seed(0))
    b = aug(images, torch.Generator().manual_seed(0))
    c = aug(images, torch.Generator().manual_seed(1))
    assert a.shape == (6, 3, 24, 24) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= -1 - 1e-5 and a.max() <= 1 + 1e-5


def test_identity_settings_leave_the_image():
    images = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    cfg = AugmentConfig(
        image_size=28,
        crop_scale=(1.0, 1.0),
        crop_ratio=(1.0, 1.0),
        flip_p=0.0,
        jitter_p=0.0,
        grayscale_p=0.0,
        mean=(0.0,),
        std=(1.0,),
    )
    out = BatchedSimCLRAugment(cfg)(images)
    assert torch.allclose(out, images.float() / 255, atol=1e-5)


def test_flip_with_p1_mirrors():
    images = torch.randint(0, 256, (3, 1, 16, 16), dtype=torch.uint8)
    cfg = AugmentConfig(
        image_size=16, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=1.0, jitter_p=0.0, mean=(0.0,), std=(1.0,)
    )
    out = BatchedSimCLRAugment(cfg)(images)
    assert torch.allclose(out, images.float().flip(-1) / 255, atol=1e-5)


def test_augment_errors():
    with pytest.raises(ValueError, match="crop_scale"):
        AugmentConfig(crop_scale=(0.5, 0.2))
    with pytest.raises(ValueError, match="probability"):
        AugmentConfig(flip_p=2)
    with pytest.raises(ValueError, match="uint8"):
        BatchedSimCLRAugment(AugmentConfig())(torch.rand(2, 3, 32, 32))


def test_per_image_pipeline():
    t = simclr_transform(AugmentConfig(image_size=24, blur_p=0.5, mean=(0.5,) * 3, std=(0.5,) * 3))
    out = t(torch.randint(0, 256, (3, 40, 40), dtype=torch.uint8))
    assert out.shape == (3, 24, 24) and out.dtype == torch.float32


def naive_knn(train, ytr, test, num_classes, k, t):
    train, test = F.normalize(train.double(), dim=1), F.normalize(test.double(), dim=1)
    preds = []
    for q in test:
        sims = train @ q
        top = sims.argsort(descending=True)[:k]
        votes = torch.zeros(num_classes, dtype=torch.float64)
        for j in top:
            votes[ytr[j]] += torch.exp(sims[j] / t)
        preds.append(votes.argmax().item())
    return torch.tensor(preds)


def test_knn_matches_naive_loop():
    g = torch.Generator().manual_seed(0)
    train, test = torch.randn(50, 8, generator=g), torch.randn(20, 8, generator=g)
    ytr = torch.randint(0, 4, (50,), generator=g)
    fast = knn_predict(train, ytr, test, 4, k=7, temperature=0.1).argmax(1)
    assert torch.equal(fast, naive_knn(train, ytr, test, 4, 7, 0.1))


def test_knn_and_probe_on_separable_clusters():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(5, 16, generator=g) * 5
    y = torch.arange(500) % 5
    x = centres[y] + torch.randn(500, 16, generator=g)
    assert knn_accuracy(x[:400], y[:400], x[400:], y[400:], 5, k=20) > 0.95
    assert linear_probe(x[:400], y[:400], x[400:], y[400:], 5, epochs=30) > 0.95
    with pytest.raises(ValueError, match="k must"):
        knn_accuracy(x, y, x, y, 5, k=0)


def test_probe_on_a_device_matches_the_default():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(60, 8, generator=g), torch.arange(60) % 3
    assert linear_probe(x[:40], y[:40], x[40:], y[40:], 3, epochs=5) == linear_probe(
        x[:40], y[:40], x[40:], y[40:], 3, epochs=5, device="cpu"
    )


def test_loader_evaluator_probes_every_training_image_and_strides_the_knn_bank():
    """Labels alternate 0, 1, ...: a bank of every 2nd image holds class 0 only (kNN at chance on a balanced
    test set), while the linear probe, trained on all of them, separates the two clusters."""
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[4.0, 0, 0, 0], [0, 4.0, 0, 0]])
    y = torch.arange(80) % 2
    x = centres[y] + 0.3 * torch.randn(80, 4, generator=g)
    train, test = list(zip(x[:60], y[:60], strict=True)), list(zip(x[60:], y[60:], strict=True))
    model = torch.nn.Module()
    model.backbone = torch.nn.Linear(4, 4)
    with torch.no_grad():
        model.backbone.weight.copy_(torch.eye(4)), model.backbone.bias.zero_()
    out = loader_evaluator(train, test, 2, knn_bank_stride=2, k=5, probe_epochs=30, workers=0)(model)
    assert set(out) == {"linear_top1", "knn_top1"}
    assert out["linear_top1"] == 1.0 and out["knn_top1"] == 0.5
    assert loader_evaluator(train, test, 2, k=5, probe_epochs=30, workers=0)(model)["knn_top1"] == 1.0
    with pytest.raises(ValueError, match="knn_bank_stride"):
        loader_evaluator(train, test, 2, knn_bank_stride=0)


def test_augment_config_from_arm_reads_required_and_optional_keys():
    arm = dict(image_size=28, crop_scale=[0.2, 1.0], jitter_strength=0.4, mean=[0.3], std=[0.4], lr=0.1)
    cfg = AugmentConfig.from_arm(arm)
    assert cfg == AugmentConfig(image_size=28, crop_scale=(0.2, 1.0), jitter_strength=0.4, mean=(0.3,), std=(0.4,))
    assert AugmentConfig.from_arm({**arm, "blur_p": 0.5, "grayscale_p": 0.0}).blur_p == 0.5
    assert AugmentConfig.from_arm({**arm, "grayscale_p": 0.0}).grayscale_p == 0.0
    with pytest.raises(KeyError):
        AugmentConfig.from_arm({k: v for k, v in arm.items() if k != "crop_scale"})
    with pytest.raises(ValueError, match="probability"):
        AugmentConfig.from_arm({**arm, "jitter_p": 1.5})
