"""Dense evaluation (shared.dense): each metric against a naive per-pixel loop and scikit-learn /
torchmetrics; the linear 1×1 probe and per-pixel kNN on separable and on random feature maps."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from sklearn import metrics as skm

from shared.backbones import SmallConvNet
from shared.dense import (
    adjusted_rand_index,
    confusion_matrix,
    dense_evaluator,
    dense_knn_votes,
    dice,
    extract_feature_maps,
    foreground_ari,
    iou_from_confusion,
    knn_segmentation,
    label_distribution,
    linear_segmentation_probe,
    segmentation_scores,
    upsample_bilinear,
)
from shared.evaluation import knn_predict

NAN = float("nan")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The tensors here are tiny: intra-op threads only add synchronisation (seconds on a busy 2-core box)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def same(a: float, b: float, tol: float = 1e-12) -> bool:
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= tol


def random_maps(seed: int, shape=(3, 6, 7), num_classes=5, absent=(3,), ignore_frac=0.15, ignore_index=255):
    """Random prediction / target with ignore pixels; classes in ``absent`` never appear; class 2 only in pred."""
    g = torch.Generator().manual_seed(seed)
    allowed = torch.tensor([c for c in range(num_classes) if c not in absent])
    pred = allowed[torch.randint(len(allowed), shape, generator=g)]
    tallowed = allowed[allowed != 2]
    target = tallowed[torch.randint(len(tallowed), shape, generator=g)]
    target[torch.rand(shape, generator=g) < ignore_frac] = ignore_index
    return pred, target


# ---------------------------------------------------------------- naive re-statements (float64, loops)


def naive_confusion(pred, target, k, ignore):
    m = [[0] * k for _ in range(k)]
    for p, t in zip(pred.flatten().tolist(), target.flatten().tolist(), strict=True):
        if t != ignore:
            m[t][p] += 1
    return torch.tensor(m)


def naive_iou(pred, target, k, ignore):
    pairs = [(p, t) for p, t in zip(pred.flatten().tolist(), target.flatten().tolist(), strict=True) if t != ignore]
    ious = []
    for c in range(k):
        inter = sum(1 for p, t in pairs if p == c and t == c)
        union = sum(1 for p, t in pairs if p == c or t == c)
        ious.append(inter / union if union else NAN)
    present = [x for x in ious if not math.isnan(x)]
    acc = sum(1 for p, t in pairs if p == t) / len(pairs) if pairs else NAN
    return ious, (sum(present) / len(present) if present else NAN), acc


def naive_dice(pred, target, k, ignore, first, empty=NAN):
    rows = []
    for s in range(pred.shape[0]):
        pairs = [(p, t) for p, t in zip(pred[s].flatten().tolist(), target[s].flatten().tolist(), strict=True)]
        pairs = [(p, t) for p, t in pairs if t != ignore]
        row = []
        for c in range(first, k):
            n_p = sum(1 for p, _ in pairs if p == c)
            n_t = sum(1 for _, t in pairs if t == c)
            both = sum(1 for p, t in pairs if p == c and t == c)
            row.append(2 * both / (n_p + n_t) if n_p + n_t else empty)
        rows.append(row)
    return rows


def naive_ari(pred, true):
    """ARI by counting every pair of pixels (the pair-counting form, independent of the contingency table)."""
    both = pred_only = true_only = neither = 0
    for i, j in itertools.combinations(range(len(pred)), 2):
        sp, st = pred[i] == pred[j], true[i] == true[j]
        both += sp and st
        pred_only += sp and not st
        true_only += st and not sp
        neither += not sp and not st
    if pred_only == 0 and true_only == 0:
        return 1.0
    num = 2 * (both * neither - pred_only * true_only)
    den = (both + pred_only) * (pred_only + neither) + (both + true_only) * (true_only + neither)
    return num / den


# ---------------------------------------------------------------- confusion matrix, IoU, pixel accuracy


@pytest.mark.parametrize("seed", range(4))
def test_confusion_and_iou_match_naive_loops(seed):
    pred, target = random_maps(seed)
    cm = confusion_matrix(pred, target, 5)
    assert cm.dtype == torch.int64 and torch.equal(cm, naive_confusion(pred, target, 5, 255))
    ious, miou, acc = naive_iou(pred, target, 5, 255)
    res = iou_from_confusion(cm)
    assert all(same(a, b) for a, b in zip(res.per_class.tolist(), ious, strict=True))
    assert math.isnan(res.per_class[3]) and res.per_class[2] == 0  # absent: NaN; only predicted: 0, counted
    assert same(res.miou, miou) and same(res.pixel_accuracy, acc)
    direct = segmentation_scores(pred, target, 5)
    assert torch.equal(direct.per_class.nan_to_num(-1), res.per_class.nan_to_num(-1)) and direct.miou == res.miou


def test_confusion_and_iou_match_sklearn():
    pred, target = random_maps(7, shape=(4, 16, 16))
    keep = target != 255
    p, t = pred[keep].numpy(), target[keep].numpy()
    cm = confusion_matrix(pred, target, 5)
    assert (cm.numpy() == skm.confusion_matrix(t, p, labels=range(5))).all()
    res = iou_from_confusion(cm)
    present = [c for c in range(5) if not math.isnan(res.per_class[c])]
    jac = skm.jaccard_score(t, p, labels=present, average=None)
    assert torch.allclose(res.per_class[present], torch.from_numpy(jac).double(), atol=1e-12)
    assert res.miou == pytest.approx(skm.jaccard_score(t, p, labels=present, average="macro"), abs=1e-12)
    assert res.pixel_accuracy == pytest.approx(skm.accuracy_score(t, p), abs=1e-12)


def test_confusion_and_iou_match_torchmetrics():
    tmf = pytest.importorskip("torchmetrics.functional.classification")
    pred, target = random_maps(8, shape=(4, 16, 16))
    cm = confusion_matrix(pred, target, 5)
    assert torch.equal(cm, tmf.multiclass_confusion_matrix(pred, target, 5, ignore_index=255))
    res = iou_from_confusion(cm)
    macro = tmf.multiclass_jaccard_index(pred, target, 5, average="macro", ignore_index=255)
    assert res.miou == pytest.approx(macro.item(), abs=1e-6)
    per = tmf.multiclass_jaccard_index(pred, target, 5, average="none", ignore_index=255).double()
    assert torch.allclose(res.per_class.nan_to_num(0.0), per, atol=1e-6)  # torchmetrics writes 0 for 0/0


def test_confusion_edge_cases():
    target = torch.full((2, 3, 3), 255)
    res = segmentation_scores(torch.zeros(2, 3, 3, dtype=torch.long), target, 3)  # everything ignored
    assert res.per_class.isnan().all() and math.isnan(res.miou) and math.isnan(res.pixel_accuracy)
    t = torch.tensor([[0, 1], [1, 1]], dtype=torch.uint8)
    res = segmentation_scores(t, t, 2)
    assert res.miou == 1.0 and res.pixel_accuracy == 1.0
    cm = confusion_matrix(t.bool(), t, 2, ignore_index=None) + confusion_matrix(t, t, 2, ignore_index=None)
    assert cm.tolist() == [[2, 0], [0, 6]]  # batches add up; bool predictions are labels 0 / 1


# ---------------------------------------------------------------- Dice


@pytest.mark.parametrize("shape", [(3, 5, 6), (2, 3, 4, 5)], ids=["2d", "3d"])
@pytest.mark.parametrize("include_background", [False, True])
@pytest.mark.parametrize("ignore_index", [None, 255])
def test_dice_matches_naive_loop(shape, include_background, ignore_index):
    pred, target = random_maps(1, shape=shape, ignore_frac=0.2 if ignore_index else 0.0)
    res = dice(pred, target, 5, ignore_index=ignore_index, include_background=include_background)
    first = 0 if include_background else 1
    want = torch.tensor(naive_dice(pred, target, 5, ignore_index, first), dtype=torch.float64)
    assert res.classes == tuple(range(first, 5)) and res.per_sample.shape == (shape[0], 5 - first)
    assert torch.allclose(res.per_sample, want, atol=1e-12, equal_nan=True)
    assert res.per_sample[:, 3 - first].isnan().all()  # class 3 absent from both: NaN
    assert (res.per_sample[:, 2 - first] == 0).all()  # class 2 only predicted: 0
    defined_cols = [[x for x in col if not math.isnan(x)] for col in want.T.tolist()]
    per_class = [sum(col) / len(col) if col else NAN for col in defined_cols]
    assert all(same(a, b) for a, b in zip(res.per_class.tolist(), per_class, strict=True))
    defined = [x for x in per_class if not math.isnan(x)]
    assert same(res.mean, sum(defined) / len(defined))


def test_dice_binary_and_empty_conventions():
    target = torch.zeros(4, 4, 4, dtype=torch.bool)
    pred = torch.zeros(4, 4, 4, dtype=torch.bool)
    target[0, :2] = True
    pred[0, :1] = True  # sample 0: |P| = 4, |T| = 8, overlap 4 → 2·4/12
    pred[1, 0, 0] = True  # sample 1: empty target, one false positive → 0
    target[2, 1:3, 1:3] = True  # sample 2: nothing predicted → 0; sample 3: both empty → NaN / 1
    pred[2] = False
    res = dice(pred, target)
    assert res.classes == (1,)
    assert torch.allclose(
        res.per_sample[:, 0], torch.tensor([2 / 3, 0.0, 0.0, NAN], dtype=torch.float64), equal_nan=True
    )
    assert res.mean == pytest.approx(2 / 9)
    res1 = dice(pred, target, empty=1.0)
    assert res1.per_sample[3, 0] == 1.0 and res1.mean == pytest.approx((2 / 3 + 1) / 4)
    as_labels = dice(pred.long(), target.long(), 2).per_sample  # bool masks are labels 0 / 1
    assert torch.equal(as_labels.nan_to_num(-1), res.per_sample.nan_to_num(-1))
    all_empty = dice(torch.zeros(1, 2, 2, dtype=torch.long), torch.zeros(1, 2, 2, dtype=torch.long))
    assert math.isnan(all_empty.mean)


def test_dice_is_2iou_over_1_plus_iou():
    pred, target = random_maps(3, shape=(3, 8, 8))
    res = dice(pred, target, 5, ignore_index=255, include_background=True)
    for s in range(3):
        iou = segmentation_scores(pred[s], target[s], 5).per_class
        assert torch.allclose(res.per_sample[s], 2 * iou / (1 + iou), atol=1e-12, equal_nan=True)


@pytest.mark.parametrize("shape", [(3, 8, 8), (2, 4, 5, 6)], ids=["2d", "3d"])
def test_dice_matches_torchmetrics(shape):
    seg = pytest.importorskip("torchmetrics.functional.segmentation")
    pred, target = random_maps(4, shape=shape, ignore_frac=0.0)
    for bg in (False, True):
        ours = dice(pred, target, 5, include_background=bg)
        theirs = seg.dice_score(pred, target, 5, include_background=bg, average="none", input_format="index")
        assert torch.allclose(ours.per_sample, theirs.double(), atol=1e-6, equal_nan=True)


# ---------------------------------------------------------------- adjusted Rand index


def grouping(seed, n=3, shape=(6, 6), groups=4):
    g = torch.Generator().manual_seed(seed)
    true = torch.randint(groups, (n, *shape), generator=g)
    noisy = torch.where(torch.rand(n, *shape, generator=g) < 0.3, torch.randint(groups, (n, *shape), generator=g), true)
    return noisy, true


@pytest.mark.parametrize("seed", range(3))
def test_ari_matches_pair_counting_and_sklearn(seed):
    pred, true = grouping(seed)
    ari = adjusted_rand_index(pred, true)
    assert ari.dtype == torch.float64 and ari.shape == (3,)
    for i in range(3):
        p, t = pred[i].flatten().tolist(), true[i].flatten().tolist()
        assert ari[i].item() == pytest.approx(naive_ari(p, t), abs=1e-12)
        assert ari[i].item() == pytest.approx(skm.adjusted_rand_score(t, p), abs=1e-12)
    fg = foreground_ari(pred, true, background=0)
    for i in range(3):
        keep = true[i] != 0
        assert fg[i].item() == pytest.approx(skm.adjusted_rand_score(true[i][keep], pred[i][keep]), abs=1e-12)
        assert fg[i].item() == pytest.approx(naive_ari(pred[i][keep].tolist(), true[i][keep].tolist()), abs=1e-12)
    several = adjusted_rand_index(pred, true, ignore=[0, 3])
    keep = (true[1] != 0) & (true[1] != 3)
    assert several[1].item() == pytest.approx(skm.adjusted_rand_score(true[1][keep], pred[1][keep]), abs=1e-12)


@pytest.mark.filterwarnings("ignore:Sparse invariant checks")
def test_ari_matches_torchmetrics():
    clu = pytest.importorskip("torchmetrics.functional.clustering")
    pred, true = grouping(5, n=2, shape=(10, 10), groups=6)
    ari = adjusted_rand_index(pred, true)
    for i in range(2):
        assert ari[i].item() == pytest.approx(
            clu.adjusted_rand_score(pred[i].flatten(), true[i].flatten()).item(), abs=1e-6
        )


def test_ari_invariances_and_special_cases():
    pred, true = grouping(9)
    base = adjusted_rand_index(pred, true)
    g = torch.Generator().manual_seed(1)
    rename = torch.randperm(4, generator=g) * 1000 - 7  # arbitrary, non-contiguous, negative ids
    assert torch.allclose(adjusted_rand_index(rename[pred], true), base, atol=1e-12)
    assert torch.allclose(adjusted_rand_index(rename[pred], rename.flip(0)[true]), base, atol=1e-12)
    assert torch.allclose(adjusted_rand_index(true, pred), base, atol=1e-12)  # symmetric
    assert torch.allclose(adjusted_rand_index(pred[[2, 0, 1]], true[[2, 0, 1]]), base[[2, 0, 1]], atol=1e-12)
    assert torch.allclose(adjusted_rand_index(pred[1:2], true[1:2]), base[1:2], atol=1e-12)  # batch-independent
    assert (adjusted_rand_index(true, rename[true]) == 1).all()
    ones = torch.zeros(2, 3, 3, dtype=torch.long)
    assert (adjusted_rand_index(ones, ones) == 1).all()  # one group each: 1, as scikit-learn
    assert skm.adjusted_rand_score([0] * 9, [0] * 9) == 1.0
    distinct = torch.arange(9).reshape(1, 3, 3)
    assert adjusted_rand_index(distinct, distinct).item() == 1.0 == skm.adjusted_rand_score(range(9), range(9))
    one_pixel = torch.zeros(1, 3, 3, dtype=torch.long)
    one_pixel[0, 1, 1] = 1
    assert adjusted_rand_index(torch.zeros_like(one_pixel), one_pixel, ignore=0).item() == 1.0
    assert math.isnan(foreground_ari(pred[:1], torch.zeros_like(true[:1])).item())  # no foreground pixel


# ---------------------------------------------------------------- upsampling, label distributions, kNN votes


@pytest.mark.parametrize("size", [(16, 16), (13, 7), (3, 4), (5, 5)])
def test_upsample_bilinear_equals_interpolate(size):
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    want = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    assert torch.allclose(upsample_bilinear(x, size), want, atol=1e-12)


@pytest.mark.parametrize("size", [(2, 3), (4, 4), (3, 5)])
def test_label_distribution_matches_naive_regions(size):
    _, masks = random_maps(2, shape=(2, 8, 9), num_classes=4, absent=(), ignore_frac=0.3)
    dist = label_distribution(masks, size, 4)
    h, w = size
    for n, i, j in itertools.product(range(2), range(h), range(w)):
        rows = range(i * 8 // h, math.ceil((i + 1) * 8 / h))
        cols = range(j * 9 // w, math.ceil((j + 1) * 9 / w))
        labels = [masks[n, r, c].item() for r in rows for c in cols if masks[n, r, c] != 255]
        want = [labels.count(c) / len(labels) if labels else 0.0 for c in range(4)]
        assert torch.allclose(dist[n, :, i, j], torch.tensor(want), atol=1e-6)


def test_knn_votes_match_naive_loop_and_knn_predict():
    g = torch.Generator().manual_seed(0)
    bank, queries = torch.randn(30, 6, generator=g), torch.randn(7, 6, generator=g)
    soft = torch.rand(30, 3, generator=g)
    soft /= soft.sum(1, keepdim=True)
    votes = dense_knn_votes(bank, soft, queries, k=5, temperature=0.2, chunk=3)
    for q in range(7):
        sims = [
            sum(a * b for a, b in zip(queries[q].tolist(), bank[j].tolist(), strict=True))
            / (queries[q].double().norm().item() * bank[j].double().norm().item())
            for j in range(30)
        ]
        top = sorted(range(30), key=lambda j: -sims[j])[:5]
        want = [sum(math.exp(sims[j] / 0.2) * soft[j, c].item() for j in top) for c in range(3)]
        assert torch.allclose(votes[q].double(), torch.tensor(want, dtype=torch.float64), rtol=1e-5)
    probs = dense_knn_votes(bank, soft, queries, k=5, temperature=0.2, chunk=3, normalize=True)
    assert torch.allclose(probs, votes / votes.sum(1, keepdim=True), atol=1e-6)
    cold = dense_knn_votes(bank, soft, queries, k=5, temperature=1e-3, normalize=True)  # exp(1000) would overflow
    assert cold.isfinite().all() and torch.allclose(cold.sum(1), torch.ones(7))
    hard = torch.randint(3, (30,), generator=g)
    one_hot = F.one_hot(hard, 3)
    assert torch.allclose(
        dense_knn_votes(bank, one_hot, queries, 10, 0.1), knn_predict(bank, hard, queries, 3, 10, 0.1)
    )


# ---------------------------------------------------------------- the probes on synthetic feature maps


def synthetic(seed, n, separable, num_classes=4, cells=8, scale=2, channels=7, ignore_frac=0.05):
    """Blocky masks (cells × cells class grid upsampled ×scale) and feature maps at cell resolution."""
    g = torch.Generator().manual_seed(seed)
    grid = torch.randint(num_classes, (n, cells, cells), generator=g)
    masks = grid.repeat_interleave(scale, 1).repeat_interleave(scale, 2)
    masks[torch.rand(masks.shape, generator=g) < ignore_frac] = 255
    feats = 0.3 * torch.randn(n, channels, cells, cells, generator=g)
    if separable:
        feats[:, :num_classes] += 4 * F.one_hot(grid, num_classes).movedim(-1, 1)
    return feats, masks


def test_probe_learns_separable_maps_and_is_chance_on_random_ones():
    ftr, mtr = synthetic(0, 24, True)
    fte, mte = synthetic(1, 12, True)
    res = linear_segmentation_probe(ftr, mtr, fte, mte, 4, epochs=30, batch_size=8)
    assert res.miou > 0.97 and res.pixel_accuracy > 0.98 and res.per_class.shape == (4,)
    again = linear_segmentation_probe(ftr, mtr, fte, mte, 4, epochs=30, batch_size=8)
    assert torch.equal(res.per_class, again.per_class)  # deterministic given the seed
    ftr, mtr = synthetic(2, 24, False)
    fte, mte = synthetic(3, 12, False)
    res = linear_segmentation_probe(ftr, mtr, fte, mte, 4, epochs=30, batch_size=8)
    assert res.miou < 0.25 and res.pixel_accuracy < 0.35  # chance: 0.25 accuracy, mIoU ≤ 1/7


def test_knn_segmentation_separable_random_and_naive():
    ftr, mtr = synthetic(0, 16, True)
    fte, mte = synthetic(1, 8, True)
    res = knn_segmentation(ftr, mtr, fte, mte, 4, k=20)
    assert res.miou > 0.97
    small = knn_segmentation(ftr, mtr, fte, mte, 4, k=5, bank_size=200, seed=3, chunk=64)
    assert small.miou > 0.9 and torch.equal(
        small.per_class, knn_segmentation(ftr, mtr, fte, mte, 4, k=5, bank_size=200, seed=3, chunk=1000).per_class
    )  # seeded bank; the chunking does not change the result
    rtr, rmtr = synthetic(2, 16, False)
    rte, rmte = synthetic(3, 8, False)
    assert knn_segmentation(rtr, rmtr, rte, rmte, 4, k=20).miou < 0.25

    # the whole pipeline re-stated: every cell in the bank, votes, class probabilities, bilinear upsampling
    ftr, mtr = synthetic(4, 3, False, cells=4, scale=3, channels=5, ignore_frac=0.2)
    fte, mte = synthetic(5, 2, False, cells=4, scale=3, channels=5, ignore_frac=0.2)
    dist = label_distribution(mtr, (4, 4), 4)
    bank = [(ftr[n, :, i, j], dist[n, :, i, j]) for n in range(3) for i in range(4) for j in range(4)]
    bank = [(f, d) for f, d in bank if d.sum() > 0]
    scores = torch.zeros(2, 4, 4, 4)
    for n, i, j in itertools.product(range(2), range(4), range(4)):
        q = fte[n, :, i, j]
        sims = sorted(((F.cosine_similarity(q, f, dim=0).item(), d) for f, d in bank), key=lambda s: -s[0])[:7]
        v = sum(math.exp(s / 0.1) * d for s, d in sims)
        scores[n, :, i, j] = v / v.sum()
    pred = F.interpolate(scores, size=(12, 12), mode="bilinear", align_corners=False).argmax(1)
    _, miou, acc = naive_iou(pred, mte, 4, 255)
    res = knn_segmentation(ftr, mtr, fte, mte, 4, k=7)
    assert res.miou == pytest.approx(miou, abs=1e-12) and res.pixel_accuracy == pytest.approx(acc, abs=1e-12)


def test_mask_batching_does_not_change_results(monkeypatch):
    ftr, mtr = synthetic(6, 7, False, ignore_frac=0.3)
    fte, mte = synthetic(7, 3, False)
    whole = knn_segmentation(ftr, mtr, fte, mte, 4, k=9, bank_size=150)
    dist = label_distribution(mtr, (5, 3), 4)
    monkeypatch.setattr("shared.dense.probes._mask_batch_size", lambda masks, k: 2)
    batched = knn_segmentation(ftr, mtr, fte, mte, 4, k=9, bank_size=150)
    assert torch.equal(whole.per_class, batched.per_class)
    assert torch.equal(dist, label_distribution(mtr, (5, 3), 4))


def test_feature_extraction_and_evaluator_end_to_end():
    torch.manual_seed(0)
    net = SmallConvNet(1, (4, 8), num_pools=1)
    net.train()
    images = torch.randint(0, 256, (10, 1, 8, 8), dtype=torch.uint8)
    pre = lambda x: x.float() / 255  # noqa: E731
    maps = extract_feature_maps(net, images, pre, batch_size=3)
    assert maps.shape == (10, 8, 4, 4) and maps.dtype == torch.float32 and not maps.requires_grad
    assert net.training  # mode restored
    assert torch.allclose(maps, net.eval().feature_maps(pre(images))[-1], atol=1e-6)
    masks = torch.randint(0, 3, (10, 8, 8))
    model = torch.nn.Module()
    model.backbone = net
    out = dense_evaluator(images[:6], masks[:6], images[6:], masks[6:], 3, pre, probe_kwargs={"epochs": 2})(model)
    assert set(out) == {"probe_miou", "probe_pixel_acc", "knn_miou"} and all(0 <= v <= 1 for v in out.values())
    with pytest.raises(ValueError, match="feature maps"):
        extract_feature_maps(net, images, pre, forward=lambda x: net(x))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    ftr, mtr = synthetic(0, 16, True)
    fte, mte = synthetic(1, 8, True)
    cpu = linear_segmentation_probe(ftr, mtr, fte, mte, 4, epochs=5)
    gpu = linear_segmentation_probe(ftr.cuda(), mtr.cuda(), fte.cuda(), mte.cuda(), 4, epochs=5)
    assert gpu.miou == pytest.approx(cpu.miou, abs=0.02)
    assert torch.equal(
        gpu.per_class, linear_segmentation_probe(ftr, mtr, fte, mte, 4, epochs=5, device="cuda").per_class
    )
    knn = knn_segmentation(ftr, mtr, fte, mte, 4, k=20, device="cuda")
    assert knn.miou == pytest.approx(knn_segmentation(ftr, mtr, fte, mte, 4, k=20).miou, abs=1e-3)
    pred, target = random_maps(0)
    assert torch.equal(confusion_matrix(pred.cuda(), target.cuda(), 5).cpu(), confusion_matrix(pred, target, 5))
    assert torch.allclose(adjusted_rand_index(pred.cuda(), target.cuda()).cpu(), adjusted_rand_index(pred, target))


# ---------------------------------------------------------------- argument errors


def test_errors_are_clear_value_errors():
    p, t = random_maps(0)
    feats, masks = synthetic(0, 4, True)
    cases = [
        (lambda: confusion_matrix(p, t[:2], 5), "same shape"),
        (lambda: confusion_matrix(p.float(), t, 5), "integer labels"),
        (lambda: confusion_matrix(p, t, 0), "positive integer"),
        (lambda: confusion_matrix(p, t, 5, ignore_index=0), "ignore_index must lie outside"),
        (lambda: confusion_matrix(p + 5, t, 5), r"pred labels at non-ignored pixels must lie in \[0, 5\)"),
        (lambda: confusion_matrix(p, t, 3), "target labels other than ignore_index=255"),
        (lambda: iou_from_confusion(torch.zeros(2, 3)), "square"),
        (lambda: dice(p[0], t[0], 5), r"\(N, H, W\) images or \(N, D, H, W\) volumes"),
        (lambda: dice(p, t, 1), "num_classes ≥ 2"),
        (lambda: adjusted_rand_index(p[0, 0], t[0, 0]), "batch dimension"),
        (lambda: adjusted_rand_index(p, t, ignore=0.5), "ignore must be"),
        (lambda: linear_segmentation_probe(feats[0], masks, feats, masks, 4), r"train_features must be a float"),
        (lambda: linear_segmentation_probe(feats, masks.float(), feats, masks, 4), "train_masks must be an integer"),
        (lambda: linear_segmentation_probe(feats, masks[:3], feats, masks, 4), "4 feature maps but 3 masks"),
        (lambda: linear_segmentation_probe(feats, masks, feats[:, :3], masks, 4), "differ in channels"),
        (lambda: linear_segmentation_probe(feats, masks, feats, masks, 3), r"train_masks labels .* \[0, 3\)"),
        (lambda: linear_segmentation_probe(feats, masks, feats, masks, 4, epochs=0), "positive"),
        (lambda: knn_segmentation(feats, masks, feats, masks, 4, bank_size=0), "bank_size"),
        (lambda: knn_segmentation(feats, masks, feats, masks, 4, k=0), "k and temperature must be positive"),
        (lambda: knn_segmentation(feats, masks, feats, masks, 4, temperature=0), "temperature"),
        (lambda: dense_knn_votes(feats[0, :, 0], masks[0, :1].float(), feats[0, :, 0], k=0), "k must be positive"),
        (lambda: knn_segmentation(feats, torch.full_like(masks, 255), feats, masks, 4), "bank is empty"),
    ]
    for fn, match in cases:
        with pytest.raises(ValueError, match=match):
            fn()
