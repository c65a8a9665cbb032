"""STS harness: SentEval layout and aggregation, Spearman, the data roads, and a pinned MiniLM score."""

import shutil

import numpy as np
import pytest
import torch

from shared.data.errors import DataUnavailableError
from shared.text.sts import REPO_DATA, STSSet, evaluate_sts, length_bias, load_sts, rankdata, spearman, sts_root

PAIRS = {"sts12": 3108, "sts13": 1500, "sts14": 3750, "sts15": 3000, "sts16": 1186, "stsb": 1379}

# all-MiniLM-L6-v2 untouched, mean pooling, fp32, max 128 tokens, on the first 256 pairs of STS-B test.
# Computed once with:
#   python -c "from shared.text import *; e = load_encoder('minilm', 'mean', 128); \
#     print(evaluate_sts(e.encode, {'stsb': load_sts(sets=['stsb'])['stsb'].head(256)}))"
PINNED_STSB_HEAD256 = 93.8301


@pytest.fixture(scope="module")
def sets():
    return load_sts()


def test_repository_copy_has_senteval_pair_counts(sets):
    assert {k: len(v) for k, v in sets.items()} == PAIRS
    assert sts_root() == REPO_DATA / "senteval" / "STS"
    s = sets["stsb"]
    assert s.sentences1[0] == "A girl is styling her hair." and s.gold[0] == 2.5


def test_spearman_against_hand_values():
    assert spearman(np.arange(5), np.arange(5) * 3 + 1) == pytest.approx(1.0)
    assert spearman(np.arange(5), -np.arange(5.0)) == pytest.approx(-1.0)
    # ties get the average rank: [1, 2.5, 2.5, 4]
    assert rankdata(np.array([3.0, 5.0, 5.0, 9.0])).tolist() == [1.0, 2.5, 2.5, 4.0]
    # ρ = 1 − 6 Σd² / (n(n²−1)) without ties: d = (0, 0, 1, −1) → 1 − 12/60 = 0.8
    assert spearman(np.array([1, 2, 3, 4]), np.array([1, 2, 4, 3])) == pytest.approx(0.8)


def test_spearman_matches_scipy():
    scipy_stats = pytest.importorskip("scipy.stats")
    g = np.random.default_rng(0)
    a, b = g.integers(0, 6, 200).astype(float), g.normal(size=200)
    assert spearman(a, b) == pytest.approx(scipy_stats.spearmanr(a, b).correlation, abs=1e-12)


def test_spearman_errors():
    with pytest.raises(ValueError, match="equal length"):
        spearman(np.zeros(3), np.zeros(4))


def _bow_encoder(sentences):
    """A deterministic stand-in encoder: hashed bag of lower-cased words."""
    out = torch.zeros(len(sentences), 64)
    for i, s in enumerate(sentences):
        for w in s.lower().split():
            out[i, hash(w) % 64] += 1
    return out + 1e-3


def test_year_score_is_one_correlation_over_pooled_pairs(sets):
    """SentEval 'all': one Spearman over the concatenated sub-sets, not a mean of per-sub-set values."""
    s = sets["sts13"]
    res = evaluate_sts(_bow_encoder, {"sts13": s})
    e1 = torch.nn.functional.normalize(_bow_encoder(s.sentences1).double(), dim=1)
    e2 = torch.nn.functional.normalize(_bow_encoder(s.sentences2).double(), dim=1)
    cos = (e1 * e2).sum(1).numpy()
    assert res["sts13"] == pytest.approx(100 * spearman(cos, s.gold), abs=1e-9)
    assert res["sts_avg"] == res["sts13"]


def test_average_is_the_mean_of_the_sets():
    a = STSSet("a", ["x y", "x z", "q"], ["x y", "y z", "r"], np.array([5.0, 2.0, 0.0]))
    b = STSSet("b", ["p", "p q"], ["q", "p q"], np.array([1.0, 4.0]))
    res = evaluate_sts(_bow_encoder, {"a": a, "b": b})
    assert res["sts_avg"] == pytest.approx((res["a"] + res["b"]) / 2)


def test_data_dir_road_and_missing_data(tmp_path, monkeypatch):
    copy = tmp_path / "mydata" / "senteval"
    shutil.copytree(REPO_DATA / "senteval" / "STS" / "STSBenchmark", copy / "STS" / "STSBenchmark")
    assert sts_root(tmp_path / "mydata") == copy / "STS"
    monkeypatch.setenv("REPRO_DATA_DIR", str(copy))
    assert sts_root() == copy / "STS"
    assert len(load_sts(sets=["stsb"])["stsb"]) == 1379
    monkeypatch.setattr("shared.text.sts.REPO_DATA", tmp_path / "nowhere")
    with pytest.raises(DataUnavailableError, match="offline road"):
        sts_root(tmp_path / "empty")


def test_bad_arguments():
    with pytest.raises(ValueError, match="SICK-R: hub only"):
        load_sts(sets=["sickr"])
    with pytest.raises(ValueError, match="unknown STS source"):
        load_sts(source="web")
    with pytest.raises(ValueError, match="no STS sets"):
        evaluate_sts(_bow_encoder, {})
    with pytest.raises(ValueError, match="differ in length"):
        STSSet("x", ["a"], ["b", "c"], np.zeros(1))


def test_length_bias_against_a_loop_and_by_construction():
    """ρ(cos, |Δlen|) over random pairs of distinct sentences: re-stated with a loop over the same pairs
    (scipy's Spearman); an embedding that encodes length is biased (ρ < 0), one that ignores it is not."""
    from scipy.stats import spearmanr

    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(3, 40, (200,), generator=g).tolist()
    pairs_g = torch.Generator().manual_seed(5)
    i = torch.randint(0, 200, (500,), generator=pairs_g)
    j = (i + torch.randint(1, 200, (500,), generator=pairs_g)) % 200
    assert not (i == j).any()
    emb = torch.randn(200, 8, generator=g, dtype=torch.float64)
    cos = [
        float(emb[a] @ emb[b] / (emb[a].norm() * emb[b].norm())) for a, b in zip(i.tolist(), j.tolist(), strict=True)
    ]
    dlen = [abs(lengths[a] - lengths[b]) for a, b in zip(i.tolist(), j.tolist(), strict=True)]
    assert length_bias(emb, lengths, pairs=500, seed=5) == pytest.approx(spearmanr(cos, dlen).statistic, abs=1e-12)
    assert abs(length_bias(emb, lengths)) < 0.1  # random directions: no length structure
    angle = torch.tensor(lengths, dtype=torch.float64) / 40 * (torch.pi / 2)
    by_length = torch.stack([angle.cos(), angle.sin()], 1)  # cosine falls exactly as lengths differ
    # −1 up to tied |Δlen| (integers) whose equal cosines differ in the last bits and so get split ranks
    assert length_bias(by_length, lengths) == pytest.approx(-1.0, abs=2e-3)
    with pytest.raises(ValueError, match="one embedding each"):
        length_bias(emb[:3], lengths)


def test_hub_road_fails_clearly_offline():
    with pytest.raises(DataUnavailableError, match="offline road"):
        load_sts(source="hub", sets=["sickr"])


def test_pinned_minilm_score_on_stsb_head(sets):
    from shared.text.encoders import load_encoder

    torch.manual_seed(0)
    enc = load_encoder("minilm", pooling="mean", max_length=128)
    res = evaluate_sts(enc.encode, {"stsb": sets["stsb"].head(256)})
    assert res["stsb"] == pytest.approx(PINNED_STSB_HEAD256, abs=0.02)
