"""DebCSE's presets: a shrunken smoke run learns and writes a record, cpu is the stated comparison,
the paper preset (BERT-base recipe) builds and steps once on a random BERT config with sampled pairs."""

import dataclasses
import json

import pytest
import torch

from methods.debcse import PAPER, PRESETS, DebCSE, IPWConfig, IPWPairBatches, build_model, build_pair_table
from methods.debcse.experiments import ipw_config, train_arm
from shared.engine import TrainConfig, fit
from shared.experiment import ArmRun, run_experiment, untrained_arm
from shared.results import read_record
from shared.text.experiment import sts_evaluator


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("smoke")
    exp = PRESETS["smoke"]
    small = {arm: {**cfg, "train_sentences": 128, "sts_pairs": 60} for arm, cfg in exp.arms.items()}
    rec = run_experiment(
        PAPER, dataclasses.replace(exp, arms=small), out_dir=tmp / "out", run_root=tmp / "runs", progress=False
    )
    return tmp, rec


def test_smoke_run_learns_and_writes_a_valid_record(smoke):
    tmp, rec = smoke
    assert read_record(tmp / "out" / "debcse" / "smoke.json")["arms"] == rec["arms"]
    for arm, metrics in rec["arms"].items():
        assert set(metrics) >= {"sts12", "sts13", "sts14", "sts15", "sts16", "stsb", "sts_avg"}, arm
        assert -1 <= metrics["length_bias"][0] <= 1 and metrics["length_bias_abs"][0] == abs(metrics["length_bias"][0])
    for arm, curve in rec["curves"].items():
        if arm == "untrained":
            continue  # the floor: no step, no curve
        assert len(curve) == 4 and curve[-1][1] < curve[0][1], f"{arm}: loss did not go down"
    assert list((tmp / "runs" / "_text_shared").glob("teacher-*.pt"))  # teacher embeddings cached


def test_cpu_preset_is_the_stated_comparison():
    exp = PRESETS["cpu"]
    assert set(exp.arms) == {"untrained", "simcse", "debcse"} and exp.default_seeds >= 3
    c = exp.comparisons[0]
    assert (c.baseline, c.method, c.metric) == ("simcse", "debcse", "sts_avg")
    bias = [c for c in exp.comparisons if not c.headline]  # the spec's length-bias metric, secondary
    assert [(c.baseline, c.method, c.metric, c.direction) for c in bias] == [
        ("simcse", "debcse", "length_bias_abs", "less")
    ]
    d = exp.arms["debcse"]
    assert d["encoder"] == "minilm" and d["temperature"] == 0.05 and d["hard_negatives"]
    assert ipw_config(d) == IPWConfig()
    shared = {k for k in exp.arms["simcse"] if k not in ("method", "share_baseline")}
    assert all(exp.arms["simcse"][k] == d[k] for k in shared)  # same budget, same data


def test_paper_preset_builds_and_steps_once(tmp_path):
    from transformers import AutoTokenizer, BertConfig

    from shared.text.encoders import bert_config_encoder, minilm_path
    from shared.text.sentences import load_wiki_sentences

    cfg = PRESETS["paper"].arms["debcse"]
    assert (cfg["encoder"], cfg["sentences"], cfg["batch_size"], cfg["lr"]) == ("bert-base-uncased", "wiki1m", 64, 3e-5)
    assert cfg["teacher"] == "princeton-nlp/unsup-simcse-bert-base-uncased" and cfg["sts_source"] == "hub"
    tok = AutoTokenizer.from_pretrained(minilm_path(), local_files_only=True)
    torch.manual_seed(0)
    enc = bert_config_encoder(BertConfig(hidden_size=64, num_hidden_layers=1, num_attention_heads=2), tok)
    model = build_model(cfg, enc)
    assert isinstance(model, DebCSE)
    sentences = load_wiki_sentences(limit=64)
    table = build_pair_table(sentences, torch.randn(64, 16), ipw_config(cfg))
    source = IPWPairBatches(sentences, enc.tokenize, 4, table)
    before = enc.model.embeddings.word_embeddings.weight.detach().clone()
    tc = TrainConfig(epochs=1, batch_size=4, lr=cfg["lr"], optimizer="adamw", max_steps=1, progress=False)
    assert fit(model, source, tc, tmp_path).steps == 1
    assert not torch.equal(before, enc.model.embeddings.word_embeddings.weight)


def test_batches_hold_anchor_positive_negative_blocks():
    sentences = [f"sentence number {i} here." for i in range(40)]
    table = build_pair_table(sentences, torch.randn(40, 8), IPWConfig(k_pos=3, k_neg=3, ref_pairs=4))
    tok = lambda s: {"input_ids": torch.zeros(len(s), 2, dtype=torch.long), "attention_mask": torch.ones(len(s), 2)}  # noqa: E731
    b = next(IPWPairBatches(sentences, tok, 8, table).epoch(0, 0, 0, 1))
    assert b["blocks"] == 3 and b["input_ids"].shape[0] == 24
    b = next(IPWPairBatches(sentences, tok, 8, table, hard_negatives=False).epoch(0, 0, 0, 1))
    assert b["blocks"] == 2 and b["input_ids"].shape[0] == 16


def test_build_errors_and_card():
    with pytest.raises(ValueError, match="unknown method"):
        build_model({**PRESETS["smoke"].arms["simcse"], "method": "diffcse"})
    assert PAPER.number == 38 and any(r.value == 80.33 for r in PAPER.reported)


@pytest.mark.parametrize("preset", ["smoke", "cpu"])
def test_floor_arm_is_the_simcse_start_and_the_headline_is_the_claim(preset):
    exp = PRESETS[preset]
    assert next(iter(exp.arms)) == "untrained" and exp.arms["untrained"] == untrained_arm(exp.arms["simcse"])
    assert [(c.baseline, c.method, c.metric) for c in exp.headline] == [("simcse", "debcse", "sts_avg")]
    floor = {"arm": "untrained", "metric": "sts_avg", "direction": "greater", "min_gain": 0.5}
    assert exp.floor(list(exp.arms)) == floor


def test_untrained_arm_is_the_start_encoder_scored_like_simcse(smoke):
    """No step runs: the floor's metrics are the STS evaluation of a fresh model of the same seed."""
    tmp, rec = smoke
    assert set(rec["arms"]["untrained"]) == set(rec["arms"]["simcse"]) and rec["curves"]["untrained"] == []
    lines = (tmp / "runs" / "debcse" / "smoke" / "untrained" / "seed0" / "metrics.jsonl").read_text().splitlines()
    assert [list(json.loads(line)) for line in lines] == [["eval"]]  # one evaluation, no training line
    cfg = {**PRESETS["smoke"].arms["untrained"], "train_sentences": 128, "sts_pairs": 60}
    torch.manual_seed(0)
    fresh = sts_evaluator(cfg, None)(build_model(cfg))
    assert fresh == pytest.approx({k: v[0] for k, v in rec["arms"]["untrained"].items()}, abs=1e-4)


def test_untrained_debcse_config_builds_no_teacher_and_no_pair_table(tmp_path):
    """Evaluation only: even a DebCSE config marked untrained skips the teacher embeddings and the sampler."""
    cfg = untrained_arm({**PRESETS["smoke"].arms["debcse"], "train_sentences": 64, "sts_pairs": 30})
    run_dir = tmp_path / "runs" / "debcse" / "smoke" / "untrained" / "seed0"
    result = train_arm(ArmRun("untrained", cfg, 0, run_dir, False, None, None, False))
    assert result.curve == [] and [e["step"] for e in result.evaluations] == [0]
    assert not (tmp_path / "runs" / "_text_shared").exists()
