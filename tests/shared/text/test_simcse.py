"""SimCSE's loss against a float64 loop, its 2-process equivalence, the encoder and the text batch source."""

import math

import pytest
import torch
import torch.nn.functional as F

from shared.testing import distributed_equivalence
from shared.text.encoders import TextEncoder, tiny_bert_encoder
from shared.text.sentences import TextBatches, load_sentences, load_wiki_sentences
from shared.text.simcse import MLPHead, SimCSE, simcse_loss


def naive_simcse(z1, z2, tau, z3=None):
    """ℓ_i = −log e^{s(i,i⁺)/τ} / Σ_j (e^{s(i,j⁺)/τ} + e^{s(i,j⁻)/τ}) by loops in float64."""
    z1, z2 = F.normalize(z1.double(), dim=1), F.normalize(z2.double(), dim=1)
    z3 = None if z3 is None else F.normalize(z3.double(), dim=1)
    losses = []
    for i in range(len(z1)):
        denom = sum(math.exp(float(z1[i] @ z2[j]) / tau) for j in range(len(z2)))
        if z3 is not None:
            denom += sum(math.exp(float(z1[i] @ z3[j]) / tau) for j in range(len(z3)))
        losses.append(-float(z1[i] @ z2[i]) / tau + math.log(denom))
    return sum(losses) / len(losses)


@pytest.mark.parametrize("tau", [0.05, 0.5])
def test_simcse_matches_float64_loop(tau):
    g = torch.Generator().manual_seed(0)
    z1, z2, z3 = (torch.randn(7, 5, generator=g, dtype=torch.float64) for _ in range(3))
    assert simcse_loss(z1, z2, tau).item() == pytest.approx(naive_simcse(z1, z2, tau), abs=1e-9)
    assert simcse_loss(z1, z2, tau, z3).item() == pytest.approx(naive_simcse(z1, z2, tau, z3), abs=1e-9)


def test_hand_value():
    # z1 = z2 = [e1, e2], τ = 1: ℓ = −1 + log(e + 1)
    z = torch.eye(2, dtype=torch.float64)
    assert simcse_loss(z, z, 1.0).item() == pytest.approx(-1 + math.log(math.e + 1), abs=1e-12)


def test_bf16_inputs_give_float32_logits():
    z1, z2 = torch.randn(4, 8).bfloat16(), torch.randn(4, 8).bfloat16()
    loss = simcse_loss(z1, z2)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


def test_loss_errors():
    with pytest.raises(ValueError, match="temperature"):
        simcse_loss(torch.randn(4, 3), torch.randn(4, 3), 0.0)
    with pytest.raises(ValueError, match="same shape"):
        simcse_loss(torch.randn(4, 3), torch.randn(5, 3))
    with pytest.raises(ValueError, match="same shape"):
        simcse_loss(torch.randn(4, 3), torch.randn(4, 3), 0.05, torch.randn(3, 3))


@pytest.mark.distributed
def test_two_processes_equal_one():
    res = distributed_equivalence([("shared.text.simcse:SimCSELoss", {"temperature": 0.05})], batch=8)
    for r in res:
        assert torch.allclose(r["single_loss"], r["dist_loss"], atol=1e-10)
        assert torch.allclose(r["single_grad"], r["dist_grad"], atol=1e-10)


@pytest.fixture(scope="module")
def tiny() -> TextEncoder:
    torch.manual_seed(0)
    return tiny_bert_encoder(hidden=16, layers=1)


def test_encoder_pooling_and_eval_determinism(tiny):
    sentences = ["a short one.", "a much longer sentence than the first one, really.", "mid length here."]
    e = tiny.encode(sentences, batch_size=2)
    assert e.shape == (3, 16) and torch.equal(e, tiny.encode(sentences, batch_size=3))
    assert torch.allclose(tiny.encode(sentences[1:2])[0], e[1], atol=1e-5)  # padding does not leak
    tokens = tiny.tokenize(sentences)
    cls = tiny.eval()(**tokens)
    mean = TextEncoder(tiny.model, tiny.tokenizer, "mean").eval()(**tokens)
    assert torch.equal(cls, tiny.model(**tokens).last_hidden_state[:, 0]) and not torch.allclose(cls, mean)
    with pytest.raises(ValueError, match="unknown pooling"):
        TextEncoder(tiny.model, tiny.tokenizer, "max")


def test_training_truncates_evaluation_does_not(tiny):
    """tokenize cuts at the training max_length; encode (SimCSE's evaluation) reads the whole sentence,
    up to the model's own limit (64 positions for the tiny BERT)."""
    short = TextEncoder(tiny.model, tiny.tokenizer, "cls", max_length=4)
    long_sentence = "the quick brown fox jumps over the lazy dog near the quiet river bank."
    full = tiny.tokenizer([long_sentence], return_tensors="pt")
    assert full["input_ids"].shape[1] > 4
    assert short.tokenize([long_sentence])["input_ids"].shape[1] == 4
    with torch.no_grad():
        whole = short.eval()(full["input_ids"], full["attention_mask"])
        cut = short(**short.tokenize([long_sentence]))
    e = short.encode([long_sentence])
    assert torch.allclose(e, whole, atol=1e-5) and not torch.allclose(e, cut, atol=1e-3)
    assert torch.allclose(short.encode([long_sentence], max_length=4), cut, atol=1e-5)  # explicit truncation
    assert short.eval_max_length == 64  # min(tokenizer's 512, position embeddings 64)
    very_long = " ".join(["word"] * 200)
    assert short.encode([very_long]).shape == (1, 16)  # cut at the model's limit, no index error


def test_simcse_model_trains_with_dropout_views(tiny):
    torch.manual_seed(0)
    model = SimCSE(tiny, MLPHead(16), temperature=0.05).train()
    batch = tiny.tokenize(load_wiki_sentences(limit=8))
    z = model.project(batch, views=2)
    assert z.shape == (2, 8, 16) and not torch.allclose(z[0], z[1])  # dropout differs per view
    loss = model(batch)["loss"]
    loss.backward()
    assert torch.isfinite(loss) and tiny.model.embeddings.word_embeddings.weight.grad is not None


def test_text_batches_ranks_partition_the_global_batch():
    sentences = [f"sentence number {i}." for i in range(40)]
    tok = lambda s: {"input_ids": torch.tensor([[len(x)] for x in s]), "attention_mask": torch.ones(len(s), 1)}  # noqa: E731
    src = TextBatches(sentences, tok, batch_size=8)
    assert src.steps_per_epoch(2) == 5
    single = [b["index"] for b in src.epoch(0, seed=3, rank=0, world_size=1)]
    r0 = [b["index"] for b in src.epoch(0, seed=3, rank=0, world_size=2)]
    r1 = [b["index"] for b in src.epoch(0, seed=3, rank=1, world_size=2)]
    for s, a, b in zip(single, r0, r1, strict=True):
        assert torch.equal(s, torch.cat([a, b]))
    assert [b["index"].tolist() for b in src.epoch(0, 3, 0, 1, skip=2)] == [s.tolist() for s in single[2:]]
    with pytest.raises(ValueError, match="exceeds"):
        TextBatches(sentences, tok, 41)
    with pytest.raises(ValueError, match="not divisible"):
        next(TextBatches(sentences, tok, 9).epoch(0, 0, 0, 2))


def test_sentences():
    wiki = load_wiki_sentences()
    assert len(wiki) == 16980 and all(len(s.split()) >= 5 for s in wiki[:100])
    assert load_sentences("wiki", limit=10) == wiki[:10]
    with pytest.raises(ValueError, match="unknown sentence set"):
        load_sentences("books")
