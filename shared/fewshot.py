"""Few-shot evaluation of frozen features: N-way K-shot episodes over held-out classes.

The protocol of unsupervised few-shot learning (U-FSL: UniSiam, BECLR, PsCo, ...): an
encoder pre-trained without labels on *base* classes is frozen; each test *episode* draws
N novel classes, K labelled support images and Q query images per class; a simple
classifier is fitted on the support features and scored on the queries. The result is the
mean accuracy over E episodes with a 95 % confidence interval

    acc = (1/E) Σ_e acc_e,        CI95 = 1.96 · std_e(acc_e) / √E

(population std, ``ddof = 0``, as the common ``np.std`` implementations do).

Determinism. Episode e is drawn with ``torch.Generator().manual_seed(first_seed + e)`` from
the class list and the labels alone, so every model evaluated on the same features array
order sees exactly the same episodes (paired comparison).

Classifiers (vectorised over the episodes):

* ``"prototype"`` — nearest centroid: class prototypes μ_c = mean of the support features,
  a query goes to the prototype of highest cosine similarity (ProtoNet-style, on
  L2-normalised features).
* ``"logistic"`` — multinomial logistic regression with an L2 penalty, as scikit-learn's
  ``LogisticRegression(C=1, solver="lbfgs")`` (the U-FSL standard): minimise
  ½‖W‖² + C Σ_i CE(W x_i + b, y_i) (bias not penalised), solved exactly for all episodes at
  once by batched Newton steps in the span of the training points (:func:`fit_logistic`).

``fit_on="prototypes"`` fits the classifier on the N class prototypes (BECLR's evaluation),
``"support"`` on all N·K support features. A transductive ``adapt(prototypes, queries)``
hook, ``(E, N, d), (E, M, d) → (E, N, d)``, may move the prototypes using the unlabelled
queries before the classifier is fitted (BECLR's OpTA plugs in here).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

Adapt = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
NORMALIZATIONS = ("l2", "standardize", "none")
CLASSIFIERS = ("prototype", "logistic")


@dataclass(frozen=True)
class Episodes:
    """Indices into a features array: support (E, N, K), query (E, N, Q); classes (E, N)."""

    support: torch.Tensor
    query: torch.Tensor
    classes: torch.Tensor

    def __len__(self) -> int:
        return self.support.shape[0]


@dataclass(frozen=True)
class FewShotResult:
    """Mean accuracy over episodes, its 95 % CI half-width, and the per-episode accuracies."""

    accuracy: float
    ci95: float
    per_episode: torch.Tensor

    def as_dict(self, prefix: str = "") -> dict[str, float]:
        return {f"{prefix}acc": self.accuracy, f"{prefix}ci95": self.ci95}


def _check_positive_int(value: int, name: str) -> int:
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def sample_episodes(
    labels: torch.Tensor,
    classes: list[int] | tuple[int, ...] | torch.Tensor,
    n_way: int = 5,
    k_shot: int = 1,
    n_query: int = 15,
    episodes: int = 600,
    first_seed: int = 0,
) -> Episodes:
    """Draw ``episodes`` N-way K-shot episodes over ``classes`` (episode e from seed ``first_seed + e``).

    Each episode picks ``n_way`` distinct classes, then ``k_shot + n_query`` distinct images of
    each (support and query are disjoint). Raises ``ValueError`` when a class has too few images.
    """
    for value, name in ((n_way, "n_way"), (k_shot, "k_shot"), (n_query, "n_query"), (episodes, "episodes")):
        _check_positive_int(value, name)
    labels = torch.as_tensor(labels).long()
    pool = torch.as_tensor(list(classes) if not torch.is_tensor(classes) else classes).long()
    if len(pool) < n_way:
        raise ValueError(f"n_way={n_way} exceeds the {len(pool)} classes available")
    members = [(labels == c).nonzero().squeeze(1) for c in pool.tolist()]
    need = k_shot + n_query
    for c, idx in zip(pool.tolist(), members, strict=True):
        if len(idx) < need:
            raise ValueError(f"class {c} has {len(idx)} images, fewer than k_shot + n_query = {need}")
    support, query, chosen = [], [], []
    for e in range(episodes):
        g = torch.Generator().manual_seed(first_seed + e)
        picks = torch.randperm(len(pool), generator=g)[:n_way]
        rows = []
        for p in picks.tolist():
            idx = members[p]
            rows.append(idx[torch.randperm(len(idx), generator=g)[:need]])
        block = torch.stack(rows)  # (N, K + Q)
        support.append(block[:, :k_shot])
        query.append(block[:, k_shot:])
        chosen.append(pool[picks])
    return Episodes(torch.stack(support), torch.stack(query), torch.stack(chosen))


def confidence_interval(accuracies: torch.Tensor) -> float:
    """Half-width of the 95 % normal interval of the mean: 1.96 · std / √E (population std)."""
    acc = torch.as_tensor(accuracies, dtype=torch.float64)
    if acc.ndim != 1 or len(acc) == 0:
        raise ValueError(f"accuracies must be a non-empty 1-D tensor, got shape {tuple(acc.shape)}")
    return float(1.96 * acc.std(unbiased=False) / math.sqrt(len(acc)))


def normalize_features(x: torch.Tensor, how: str = "l2") -> torch.Tensor:
    """``l2``: unit norm; ``standardize``: zero mean, unit std over each vector's dims (BECLR); ``none``."""
    if how == "l2":
        return F.normalize(x, dim=-1)
    if how == "standardize":
        return (x - x.mean(-1, keepdim=True)) / x.std(-1, keepdim=True).clamp_min(1e-12)
    if how == "none":
        return x
    raise ValueError(f"unknown normalisation {how!r}; choose from {NORMALIZATIONS}")


def nearest_centroid(prototypes: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
    """Predicted class (E, M): the prototype of highest cosine similarity."""
    sims = F.normalize(queries, dim=-1) @ F.normalize(prototypes, dim=-1).transpose(1, 2)
    return sims.argmax(-1)


def fit_logistic(
    x: torch.Tensor, y: torch.Tensor, num_classes: int, c: float = 1.0, max_iter: int = 30, tol: float = 1e-6
) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial L2 logistic regression per episode: x (E, n, d), y (E, n) → W (E, d, C), b (E, C).

    Minimises ½‖W‖² + c Σ_i CE(W x_i + b, y_i) for every episode (scikit-learn's objective with
    ``C = c``). The optimum satisfies W = −c Σ_i x_i r_iᵀ (r: softmax residuals), so W = Xᵀα lies
    in the span of the n training points: we solve for α (n × C) and b with the Gram matrix
    K = X Xᵀ, ½ tr(αᵀ K α) + c Σ CE(K α + b), by Newton steps with the exact gradient and
    Hessian, batched over episodes (float64; each step tries t ∈ {1, ½, ¼, ⅛, 0} and keeps
    the best per episode, so the objective never increases).
    """
    if not (isinstance(c, (int, float)) and c > 0):
        raise ValueError(f"the inverse regularisation c must be positive, got {c!r}")
    x64 = x.detach().double()
    e, n, _ = x64.shape
    k_cls = num_classes
    gram = x64 @ x64.transpose(1, 2)
    phi = torch.cat([gram, gram.new_ones(e, n, 1)], 2)  # logits_i = φ_iᵀ Θ, Θ = [α; b]: (n + 1) × C
    k_pad = F.pad(gram, (0, 1, 0, 1))  # the bias is not penalised
    targets = F.one_hot(y.long(), k_cls).double()

    def objective(theta: torch.Tensor) -> torch.Tensor:  # theta (..., E, n + 1, C)
        logits = phi @ theta
        ce = (torch.logsumexp(logits, -1) - (logits * targets).sum(-1)).sum(-1)
        return 0.5 * (theta * (k_pad @ theta)).sum((-1, -2)) + c * ce

    theta = x64.new_zeros(e, n + 1, k_cls)
    size = (n + 1) * k_cls
    eye_c = torch.eye(k_cls, dtype=torch.float64)
    ridge = 1e-10 * torch.eye(size, dtype=torch.float64)
    steps = torch.tensor([1.0, 0.5, 0.25, 0.125, 0.0], dtype=torch.float64)
    for _ in range(max_iter):
        prob = torch.softmax(phi @ theta, -1)
        grad = k_pad @ theta + c * phi.transpose(1, 2) @ (prob - targets)
        if grad.abs().max() < tol:
            break
        h_logits = torch.diag_embed(prob) - prob[..., :, None] * prob[..., None, :]  # (E, n, C, C)
        hess = c * torch.einsum("eia,eib,eicd->eacbd", phi, phi, h_logits)
        hess = hess + torch.einsum("eab,cd->eacbd", k_pad, eye_c)
        delta = torch.linalg.solve(hess.reshape(e, size, size) + ridge, grad.reshape(e, size, 1)).view(e, n + 1, k_cls)
        trials = theta[None] - steps[:, None, None, None] * delta[None]  # (T, E, n + 1, C)
        best = objective(trials).argmin(0)  # (E,)
        theta = trials[best, torch.arange(e)]
    return x64.transpose(1, 2) @ theta[:, :n], theta[:, n]


def classify_episodes(
    support: torch.Tensor,
    queries: torch.Tensor,
    classifier: str = "prototype",
    fit_on: str = "support",
    adapt: Adapt | None = None,
    c: float = 1.0,
) -> torch.Tensor:
    """Predictions (E, M) for support features (E, N, K, d) and query features (E, M, d)."""
    if classifier not in CLASSIFIERS:
        raise ValueError(f"unknown classifier {classifier!r}; choose from {CLASSIFIERS}")
    if fit_on not in ("support", "prototypes"):
        raise ValueError(f"fit_on must be 'support' or 'prototypes', got {fit_on!r}")
    if support.ndim != 4 or queries.ndim != 3 or support.shape[0] != queries.shape[0]:
        raise ValueError(
            f"expected support (E, N, K, d) and queries (E, M, d), got {tuple(support.shape)}, {tuple(queries.shape)}"
        )
    e, n, k, d = support.shape
    prototypes = support.mean(2)
    if adapt is not None:
        moved = adapt(prototypes, queries)
        if moved.shape != prototypes.shape:
            raise ValueError(
                f"adapt must return prototypes of shape {tuple(prototypes.shape)}, got {tuple(moved.shape)}"
            )
        # the support features move with their prototype (no change when fit_on="prototypes")
        support = support + (moved - prototypes)[:, :, None]
        prototypes = moved
    if classifier == "prototype":
        return nearest_centroid(prototypes, queries)
    if fit_on == "prototypes":
        x, y = prototypes, torch.arange(n).expand(e, n)
    else:
        x, y = support.reshape(e, n * k, d), torch.arange(n).repeat_interleave(k).expand(e, n * k)
    w, b = fit_logistic(x, y, n, c)
    return (queries.double() @ w + b[:, None]).argmax(-1)


def evaluate_fewshot(
    features: torch.Tensor,
    labels: torch.Tensor,
    classes: list[int] | tuple[int, ...],
    n_way: int = 5,
    k_shot: int = 1,
    n_query: int = 15,
    episodes: int = 600,
    classifier: str = "prototype",
    fit_on: str = "support",
    adapt: Adapt | None = None,
    normalize: str = "l2",
    first_seed: int = 0,
    chunk: int = 200,
) -> FewShotResult:
    """Mean query accuracy over ``episodes`` episodes with its 95 % CI.

    ``features`` (N_images, d) are frozen features of the images whose ``labels`` are given;
    episodes draw from ``classes`` only. Episodes are processed ``chunk`` at a time.
    """
    if features.ndim != 2 or features.shape[0] != len(labels):
        raise ValueError(f"features must be (N, d) with N = len(labels), got {tuple(features.shape)}")
    eps = sample_episodes(labels, classes, n_way, k_shot, n_query, episodes, first_seed)
    feats = normalize_features(features.float(), normalize)
    accs = []
    for s in range(0, len(eps), chunk):
        sup_idx, qry_idx = eps.support[s : s + chunk], eps.query[s : s + chunk]
        support = feats[sup_idx]  # (e, N, K, d)
        queries = feats[qry_idx].flatten(1, 2)  # (e, N·Q, d), class-major
        truth = torch.arange(n_way).repeat_interleave(n_query)
        pred = classify_episodes(support, queries, classifier, fit_on, adapt)
        accs.append((pred == truth).float().mean(1))
    per_episode = torch.cat(accs)
    return FewShotResult(float(per_episode.mean()), confidence_interval(per_episode), per_episode)


__all__ = [
    "Adapt",
    "Episodes",
    "FewShotResult",
    "classify_episodes",
    "confidence_interval",
    "evaluate_fewshot",
    "fit_logistic",
    "nearest_centroid",
    "normalize_features",
    "sample_episodes",
]
