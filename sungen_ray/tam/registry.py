"""Pick a TAM by name: its encoder (text -> tensors, once) and its model (tensors -> logits)."""

from __future__ import annotations

from torch import nn

from sungen_ray.errors import SungenError
from sungen_ray.tam.bow import BowEncoder, BowModel
from sungen_ray.tam.config import TAM_NAMES, TRAIN_DEFAULTS, TamConfig  # noqa: F401 - importable from here too
from sungen_ray.tam.encoded import Encoded
from sungen_ray.tam.lstm import LstmEncoder, LstmModel
from sungen_ray.tam.minilm import HeadModel, MiniLMEncoder
from sungen_ray.tam.minilm_ft import MiniLMClassifier, MiniLMTokenEncoder


def build_encoder(cfg: TamConfig, texts=None):
    """The encoder for ``cfg``; the LSTM fits its vocabulary on ``texts`` (the synthetic set: a list
    of strings, or an iterator of lists of strings streamed in chunks)."""
    if cfg.name == "bow":
        return BowEncoder(cfg.buckets, cfg.bigrams)
    if cfg.name == "lstm":
        if texts is None:
            raise SungenError("tam lstm: needs the training texts to build its vocabulary")
        return LstmEncoder.fit(texts, cfg.vocab_size, cfg.max_len)
    if cfg.name == "minilm":
        return MiniLMEncoder()
    if cfg.name == "minilm-ft":
        return MiniLMTokenEncoder(cfg.max_len)
    raise SungenError(f"tam: unknown TAM {cfg.name!r}; choose one of {list(TAM_NAMES)}")


def build_model(cfg: TamConfig, encoder, encoded: Encoded, num_labels: int) -> nn.Module:
    """A freshly initialised model; seed torch (or fork the RNG) before calling for a fixed phi_0."""
    if cfg.name == "bow":
        return BowModel(cfg.buckets, num_labels, cfg.dim, cfg.sparse)
    if cfg.name == "lstm":
        return LstmModel(encoder.vocab_size, num_labels)
    if cfg.name == "minilm":
        return HeadModel(encoded.features.shape[1], num_labels, cfg.hidden)
    if cfg.name == "minilm-ft":
        return MiniLMClassifier(num_labels)
    raise SungenError(f"tam: unknown TAM {cfg.name!r}; choose one of {list(TAM_NAMES)}")
