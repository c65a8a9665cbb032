"""Evaluation of frozen representations: weighted kNN and a linear probe.

Weighted kNN (Wu et al., 2018, InstDisc; the solo-learn / MoCo protocol): features are
L2-normalised; each test point takes its k nearest training features by cosine
similarity, and class c scores ``Σ_{j ∈ top-k, y_j = c} exp(s_j / T)``; k = 200, T = 0.1.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from shared.data.arrays import ImageArrays


@torch.no_grad()
def extract_features(
    model: nn.Module,
    images: torch.Tensor,
    preprocess: Callable[[torch.Tensor], torch.Tensor],
    batch_size: int = 1024,
    device: torch.device | str = "cpu",
    desc: str | None = None,
) -> torch.Tensor:
    """Features of ``model`` (in eval mode) for a uint8 image tensor, float32 on the CPU."""
    was_training = model.training
    model.eval()
    out = []
    starts = range(0, len(images), batch_size)
    for i in tqdm(starts, desc=desc, leave=False, disable=desc is None):
        x = preprocess(images[i : i + batch_size].to(device))
        out.append(model(x).float().cpu())
    model.train(was_training)
    return torch.cat(out)


@torch.no_grad()
def knn_predict(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.1,
    chunk: int = 1024,
) -> torch.Tensor:
    """Weighted-kNN class scores (N_test, num_classes)."""
    if k < 1:
        raise ValueError(f"k must be positive, got {k}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    bank = F.normalize(train_features.float(), dim=1)
    k = min(k, len(bank))
    scores = []
    for i in range(0, len(test_features), chunk):
        q = F.normalize(test_features[i : i + chunk].float(), dim=1)
        sim, idx = (q @ bank.T).topk(k, dim=1)
        weights = (sim / temperature).exp()
        votes = torch.zeros(len(q), num_classes, dtype=weights.dtype)
        votes.scatter_add_(1, train_labels[idx], weights)
        scores.append(votes)
    return torch.cat(scores)


def knn_accuracy(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.1,
) -> float:
    """Top-1 accuracy of the weighted kNN classifier, in [0, 1]."""
    scores = knn_predict(train_features, train_labels, test_features, num_classes, k, temperature)
    return (scores.argmax(1) == test_labels).float().mean().item()


def linear_probe(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    num_classes: int,
    epochs: int = 100,
    lr: float = 1e-2,
    weight_decay: float = 1e-5,
    batch_size: int = 1024,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> float:
    """Top-1 test accuracy of a linear classifier trained on frozen, standardised features.

    Adam with cosine decay on features standardised by the training mean and std: a
    fast, tuning-free stand-in for the SGD probe of the papers (same ranking in practice).
    ``device`` (default: where the features are) is where the probe trains, e.g. a GPU at paper scale.
    """
    g = torch.Generator().manual_seed(seed)
    if device is not None:
        train_features, test_features = train_features.to(device), test_features.to(device)
        train_labels, test_labels = train_labels.to(device), test_labels.to(device)
    mean, std = train_features.mean(0), train_features.std(0).clamp_min(1e-6)
    xtr, xte = (train_features - mean) / std, (test_features - mean) / std
    clf = nn.Linear(xtr.shape[1], num_classes)
    with torch.no_grad():
        clf.weight.normal_(0, 0.01, generator=g)
        clf.bias.zero_()
    clf = clf.to(xtr.device)
    opt = torch.optim.Adam(clf.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = max(1, (len(xtr) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * steps_per_epoch)
    with torch.enable_grad():
        for _ in range(epochs):
            perm = torch.randperm(len(xtr), generator=g).to(xtr.device)
            for i in range(0, len(xtr), batch_size):
                idx = perm[i : i + batch_size]
                loss = F.cross_entropy(clf(xtr[idx]), train_labels[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
    with torch.no_grad():
        return (clf(xte).argmax(1) == test_labels).float().mean().item()


def knn_evaluator(
    train: ImageArrays,
    test: ImageArrays,
    preprocess: Callable[[torch.Tensor], torch.Tensor],
    k: int = 200,
    temperature: float = 0.1,
    linear: bool = False,
    feature_attr: str = "backbone",
) -> Callable[[nn.Module], dict[str, float]]:
    """``evaluate(model)`` → ``{"knn_top1": ..., ["linear_top1": ...]}`` on ``model.<feature_attr>``.

    ``train`` is the kNN bank (and the probe's training set); ``test`` the held-out set.
    """

    def evaluate(model: nn.Module) -> dict[str, float]:
        net = getattr(model, feature_attr)
        device = next(net.parameters()).device
        ftr = extract_features(net, train.images, preprocess, device=device)
        fte = extract_features(net, test.images, preprocess, device=device)
        out = {"knn_top1": knn_accuracy(ftr, train.labels, fte, test.labels, train.num_classes, k, temperature)}
        if linear:
            out["linear_top1"] = linear_probe(ftr, train.labels, fte, test.labels, train.num_classes)
        return out

    return evaluate


@torch.no_grad()
def loader_features(
    model: nn.Module,
    dataset: torch.utils.data.Dataset,
    device: torch.device | str = "cpu",
    batch_size: int = 256,
    workers: int = 8,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features and labels of an ``(image, label)`` dataset through a DataLoader (paper scale)."""
    was_training = model.training
    model.eval()
    feats, labels = [], []
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=workers)
    for x, y in tqdm(loader, desc="features", leave=False):
        feats.append(model(x.to(device)).float().cpu())
        labels.append(torch.as_tensor(y))
    model.train(was_training)
    return torch.cat(feats), torch.cat(labels)


def loader_evaluator(
    train: torch.utils.data.Dataset,
    test: torch.utils.data.Dataset,
    num_classes: int,
    knn_bank_stride: int = 1,
    k: int = 200,
    temperature: float = 0.1,
    probe_epochs: int = 100,
    workers: int = 8,
    feature_attr: str = "backbone",
) -> Callable[[nn.Module], dict[str, float]]:
    """``evaluate(model)`` → ``{"linear_top1", "knn_top1"}`` on ``(image, label)`` data sets (paper scale).

    The linear protocol of the papers: the backbone ``model.<feature_attr>`` frozen, a linear classifier
    trained on the features of *every* image of ``train`` (:func:`linear_probe`, on the model's device),
    top-1 on ``test``. Weighted kNN (k, T) is the extra metric, with every ``knn_bank_stride``-th training
    image as its bank. Features are extracted once per call (deterministic eval transforms).
    """
    if knn_bank_stride < 1:
        raise ValueError(f"knn_bank_stride must be at least 1, got {knn_bank_stride}")

    def evaluate(model: nn.Module) -> dict[str, float]:
        net = getattr(model, feature_attr)
        device = next(net.parameters()).device
        ftr, ytr = loader_features(net, train, device=device, workers=workers)
        fte, yte = loader_features(net, test, device=device, workers=workers)
        bank = slice(None, None, knn_bank_stride)
        return {
            "linear_top1": linear_probe(ftr, ytr, fte, yte, num_classes, epochs=probe_epochs, device=device),
            "knn_top1": knn_accuracy(ftr[bank], ytr[bank], fte, yte, num_classes, k, temperature),
        }

    return evaluate
