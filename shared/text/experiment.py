"""Training and STS evaluation of one text arm, shared by the sentence-embedding papers.

An arm's config names the encoder (``"minilm"`` offline, a hub name online, ``"tiny"`` for
tests), the training sentences (``"wiki"`` offline / ``"wiki1m"`` online), the recipe, and
the STS road. :func:`train_text_arm` builds the model, trains it with
:func:`shared.engine.fit` and scores the [CLS] encoder (no MLP) on STS once at the end.

``share_baseline``: arms with exactly the same config and seed train exactly the same
model; the SimCSE arm that several papers' cpu presets contain is trained once and its
result file reused (``<run root>/_text_shared/<hash>-seed<s>.json``, the hash covering the
config, the data folder and the shared layer's code).

An ``untrained`` arm (:func:`shared.experiment.untrained_arm` of the baseline's config) builds
the same model (the pretrained encoder as it is, or a random one for ``"tiny"``) and scores it
with the same STS evaluation after zero steps; it never reads or writes the shared file.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from shared.distributed import is_main_process
from shared.engine import DataSource, TrainConfig, fit
from shared.experiment import ArmResult, ArmRun, config_hash, is_untrained
from shared.losses import alignment, uniformity
from shared.text.encoders import TextEncoder, load_encoder, tiny_bert_encoder
from shared.text.sentences import TextBatches, load_sentences
from shared.text.simcse import MLPHead, SentenceContrastive, SimCSE
from shared.text.sts import evaluate_sts, length_bias, load_sts


def build_encoder(cfg: dict[str, Any]) -> TextEncoder:
    if cfg["encoder"] == "tiny":
        return tiny_bert_encoder(cfg.get("tiny_hidden", 32), cfg.get("tiny_layers", 2), 2, cfg["pooling"])
    return load_encoder(cfg["encoder"], cfg["pooling"], cfg["max_length"])


def build_simcse(cfg: dict[str, Any]) -> SimCSE:
    encoder = build_encoder(cfg)
    return SimCSE(encoder, MLPHead(encoder.dim), cfg["temperature"])


def text_train_config(cfg: dict[str, Any], seed: int, epochs: int | None, progress: bool) -> TrainConfig:
    """The arm's :class:`TrainConfig`; zero epochs (evaluation only) for an ``untrained`` arm."""
    return TrainConfig(
        epochs=0 if is_untrained(cfg) else epochs or cfg["epochs"],
        batch_size=cfg["batch_size"],
        lr=cfg["lr"],
        weight_decay=cfg.get("weight_decay", 0.0),
        optimizer=cfg.get("optimizer", "adamw"),
        warmup_epochs=cfg.get("warmup_epochs", 0.0),
        bf16=cfg.get("bf16", False),
        seed=seed,
        max_steps=cfg.get("max_steps"),
        checkpoint_every=cfg.get("checkpoint_every", 0),
        eval_every=cfg.get("eval_every", 0),
        log_every=cfg.get("log_every", 10),
        progress=progress,
    )


def sts_evaluator(cfg: dict[str, Any], data_dir: str | None) -> Callable[[torch.nn.Module], dict[str, float]]:
    """STS Spearman ×100 (+ alignment/uniformity and length bias on STS-B test) of ``model.encoder``
    without the head.

    Alignment: pairs of STS-B test with gold ≥ 4; uniformity: all STS-B test sentences
    (Wang & Isola, as SimCSE's analysis). Length bias: Spearman ρ of cosine vs |word-count difference| on
    4096 random pairs of distinct STS-B test sentences (:func:`shared.text.sts.length_bias`; unrelated
    pairs, so ρ measures how much similarity follows length alone), signed (``length_bias``) and
    absolute (``length_bias_abs``, the size of the bias).
    """
    sets = load_sts(data_dir, cfg.get("sts_source", "senteval"), cfg.get("sts_sets"))
    if cfg.get("sts_pairs"):
        sets = {k: v.head(cfg["sts_pairs"]) for k, v in sets.items()}
    batch, bf16 = cfg.get("eval_batch_size", 128), cfg.get("eval_bf16", cfg.get("bf16", False))

    def evaluate(model: torch.nn.Module) -> dict[str, float]:
        encoder: TextEncoder = model.encoder  # type: ignore[assignment]
        out = evaluate_sts(lambda s: encoder.encode(s, batch, bf16), sets)
        if "stsb" in sets:
            b = sets["stsb"]
            close = [i for i, g in enumerate(b.gold) if g >= 4.0]
            e1 = encoder.encode([b.sentences1[i] for i in close], batch, bf16)
            e2 = encoder.encode([b.sentences2[i] for i in close], batch, bf16)
            out["align"] = float(alignment(e1, e2))
            every = sorted(set(b.sentences1) | set(b.sentences2))
            every_emb = encoder.encode(every, batch, bf16)
            out["uniform"] = float(uniformity(every_emb))
            out["length_bias"] = length_bias(every_emb, [len(t.split()) for t in every])
            out["length_bias_abs"] = abs(out["length_bias"])
        return out

    return evaluate


def train_text_arm(
    run: ArmRun,
    build_model: Callable[[dict[str, Any]], SentenceContrastive],
    make_source: Callable[[dict[str, Any], list[str], SentenceContrastive, ArmRun], DataSource] | None = None,
) -> ArmResult:
    """Train one (arm, seed) and score STS at the end (metrics: each set, ``sts_avg``, align, uniform).

    An ``untrained`` arm is scored at its start (no step, no ``make_source``: the plain sentence
    batches only give ``fit`` its epoch length); from a pretrained encoder that score does not
    depend on the seed, so it is computed once and shared (``<hash>-start.json``).
    """
    cfg = run.config
    untrained = is_untrained(cfg)
    shared = cfg.get("share_baseline") and run.epochs is None and not untrained
    shared_file = _shared_file(run) if shared else None
    if untrained and cfg["encoder"] != "tiny":
        # a pretrained start scored without any head is the same network for every seed: score it once
        shared_file = _shared_file(run, seed_independent=True)
    if shared_file is not None and shared_file.exists():
        saved = json.loads(shared_file.read_text())
        return ArmResult(saved["metrics"], saved["curve"], saved["evaluations"], saved["wall_seconds"])
    sentences = load_sentences(cfg["sentences"], run.data_dir, cfg.get("train_sentences"))
    torch.manual_seed(run.seed)  # paired seeds: the same head initialisation for every arm of a seed
    model = build_model(cfg)
    tc = text_train_config(cfg, run.seed, run.epochs, run.progress)
    source = (
        make_source(cfg, sentences, model, run)
        if make_source and not untrained
        else TextBatches(sentences, model.encoder.tokenize, tc.batch_size)
    )
    result = fit(
        model,
        source,
        tc,
        run.run_dir,
        resume=run.resume,
        evaluate=sts_evaluator(cfg, run.data_dir),
        desc=f"{run.arm} s{run.seed}",
    )
    final = result.evaluations[-1]
    metrics = {k: v for k, v in final.items() if k not in ("epoch", "step")}
    out = ArmResult(metrics, result.history, result.evaluations, result.wall_seconds)
    if shared_file is not None and is_main_process():
        shared_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = shared_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(out.__dict__))
        os.replace(tmp, shared_file)
    return out


def code_fingerprint() -> str:
    """A hash of the shared layer's source (every ``shared/**/*.py``) and the torch version: a cached
    baseline made by other code is not reused."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256(torch.__version__.encode())
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _shared_file(run: ArmRun, seed_independent: bool = False) -> Path:
    key = config_hash({"config": run.config, "data_dir": run.data_dir, "code": code_fingerprint()})
    name = f"{key}-start.json" if seed_independent else f"{key}-seed{run.seed}.json"
    return run.run_dir.parents[3] / "_text_shared" / name


# --- recipes shared by the sentence-embedding papers' presets ----------------------------

# smoke: a tiny random BERT (MiniLM tokenizer), 8 steps, STS on the first 200 pairs of each set.
SMOKE_TEXT = dict(
    encoder="tiny",
    pooling="cls",
    max_length=32,
    sentences="wiki",
    train_sentences=256,
    epochs=1,
    batch_size=32,
    lr=5e-4,
    optimizer="adamw",
    temperature=0.05,
    sts_pairs=200,
    log_every=1,
)

# cpu: all-MiniLM-L6-v2 (bundled), [CLS] pooling as SimCSE, 100 steps at batch 64 on 6400
# offline Wikipedia sentences, bf16; STS12–16 + STS-B once at the end.
CPU_TEXT = dict(
    encoder="minilm",
    pooling="cls",
    max_length=32,
    sentences="wiki",
    train_sentences=6400,
    epochs=1,
    batch_size=64,
    lr=3e-5,
    optimizer="adamw",
    temperature=0.05,
    bf16=True,
    eval_bf16=True,
    log_every=5,
)

# paper: BERT-base (hub), SimCSE's wiki1m (hub), STS incl. SICK-R from the hub.
PAPER_TEXT = dict(
    encoder="bert-base-uncased",
    pooling="cls",
    max_length=32,
    sentences="wiki1m",
    epochs=1,
    optimizer="adamw",
    temperature=0.05,
    bf16=True,
    sts_source="hub",
    checkpoint_every=1000,
    log_every=50,
)

TEXT_METRIC = "STS Spearman ×100 of the [CLS] encoder without the MLP, SentEval 'all' for STS12–16"
