"""Pick a TAM by name: its encoder (text -> tensors, once) and its model (tensors -> logits)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import nn

from sungen_ray.errors import SungenError
from sungen_ray.tam.bow import BowEncoder, BowModel
from sungen_ray.tam.encoded import Encoded
from sungen_ray.tam.lstm import LstmEncoder, LstmModel
from sungen_ray.tam.minilm import HeadModel, MiniLMEncoder

TAM_NAMES = ("bow", "lstm", "minilm")

# Training defaults per TAM (inner problem of reweighting and the final TAM alike).
TRAIN_DEFAULTS = {
    "bow": {"optimizer": "adam", "lr": 0.01, "batch_size": 256},
    "lstm": {"optimizer": "adam", "lr": 0.002, "batch_size": 64},
    "minilm": {"optimizer": "adam", "lr": 0.003, "batch_size": 128},
}


@dataclass
class TamConfig:
    name: Literal["bow", "lstm", "minilm"] = "bow"
    # bow: hashed word (+ bigram) buckets and embedding width
    buckets: int = 1 << 18
    bigrams: bool = True
    dim: int = 32
    # bow: train steps update only the table rows a batch touches (False: the dense table step)
    sparse: bool = True
    # lstm: vocabulary size and truncation length
    vocab_size: int = 50_000
    max_len: int = 64
    # minilm: head hidden width (0 = linear head)
    hidden: int = 256
    # training (None = the TAM's default from TRAIN_DEFAULTS)
    optimizer: Literal["sgd", "adam"] | None = None
    lr: float | None = None
    batch_size: int | None = None

    def validate(self) -> None:
        for field in ("buckets", "dim", "vocab_size", "max_len"):
            if getattr(self, field) < 1:
                raise SungenError(f"{field}: must be >= 1, got {getattr(self, field)}")
        if self.hidden < 0:
            raise SungenError(f"hidden: must be >= 0, got {self.hidden}")
        if self.lr is not None and not self.lr > 0:
            raise SungenError(f"lr: must be > 0, got {self.lr}")
        if self.batch_size is not None and self.batch_size < 1:
            raise SungenError(f"batch_size: must be >= 1, got {self.batch_size}")

    def train_setting(self, key: str):
        value = getattr(self, key)
        return TRAIN_DEFAULTS[self.name][key] if value is None else value


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
    raise SungenError(f"tam: unknown TAM {cfg.name!r}; choose one of {list(TAM_NAMES)}")


def build_model(cfg: TamConfig, encoder, encoded: Encoded, num_labels: int) -> nn.Module:
    """A freshly initialised model; seed torch (or fork the RNG) before calling for a fixed phi_0."""
    if cfg.name == "bow":
        return BowModel(cfg.buckets, num_labels, cfg.dim, cfg.sparse)
    if cfg.name == "lstm":
        return LstmModel(encoder.vocab_size, num_labels)
    if cfg.name == "minilm":
        return HeadModel(encoded.features.shape[1], num_labels, cfg.hidden)
    raise SungenError(f"tam: unknown TAM {cfg.name!r}; choose one of {list(TAM_NAMES)}")
