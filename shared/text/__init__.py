"""Sentence-embedding layer shared by the text papers: STS evaluation, encoders, data, SimCSE.

>>> from shared.text import load_encoder, load_sts, evaluate_sts
>>> enc = load_encoder("minilm", pooling="mean")
>>> evaluate_sts(enc.encode, load_sts())      # STS12–16 + STS-B Spearman ×100, 6-set average
"""

from shared.text.encoders import TextEncoder, load_encoder, minilm_path, tiny_bert_encoder
from shared.text.sentences import TextBatches, load_sentences, load_wiki1m, load_wiki_sentences
from shared.text.simcse import MLPHead, SentenceContrastive, SimCSE, SimCSELoss, simcse_loss
from shared.text.sts import STSSet, evaluate_sts, length_bias, load_sts, spearman

__all__ = [
    "MLPHead",
    "STSSet",
    "SentenceContrastive",
    "SimCSE",
    "SimCSELoss",
    "TextBatches",
    "TextEncoder",
    "evaluate_sts",
    "length_bias",
    "load_encoder",
    "load_sentences",
    "load_sts",
    "load_wiki1m",
    "load_wiki_sentences",
    "minilm_path",
    "simcse_loss",
    "spearman",
    "tiny_bert_encoder",
]
