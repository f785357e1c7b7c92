"""Which TAM and how to train it: plain data (the registry builds encoders and models from it)."""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Literal

from sungen_ray.errors import SungenError

TamName = Literal["bow", "lstm", "minilm", "minilm-ft"]
TAM_NAMES: tuple[str, ...] = typing.get_args(TamName)

# Training defaults per TAM (inner problem of reweighting and the final TAM alike).
TRAIN_DEFAULTS = {
    "bow": {"optimizer": "adam", "lr": 0.01, "batch_size": 256},
    "lstm": {"optimizer": "adam", "lr": 0.002, "batch_size": 64},
    "minilm": {"optimizer": "adam", "lr": 0.003, "batch_size": 128},
    # the usual BERT fine-tuning setting
    "minilm-ft": {"optimizer": "adam", "lr": 3e-5, "batch_size": 32},
}


@dataclass
class TamConfig:
    name: TamName = "bow"
    # bow: hashed word (+ bigram) buckets and embedding width
    buckets: int = 1 << 18
    bigrams: bool = True
    dim: int = 32
    # bow: train steps update only the table rows a batch touches (False: the dense table step)
    sparse: bool = True
    # lstm: vocabulary size and truncation length (minilm-ft: training truncation length in tokens; a
    # trained minilm-ft reads texts whole, up to its 512 positions, as the transformers pipeline does)
    vocab_size: int = 50_000
    max_len: int = 64
    # minilm: head hidden width (0 = linear head)
    hidden: int = 256
    # training (None = the TAM's default from TRAIN_DEFAULTS)
    # lbfgs: a full-batch fit to convergence with an l2 penalty, for a linear head (hidden 0) over
    # frozen features only (a final-model setting: logistic regression; reweighting refuses it)
    optimizer: Literal["sgd", "adam", "lbfgs"] | None = None
    l2: float = 1e-2
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
        if self.optimizer == "lbfgs" and not (self.name == "minilm" and self.hidden == 0):
            raise SungenError("optimizer: 'lbfgs' fits a linear head over frozen features: needs name minilm, hidden 0")
        if not self.l2 >= 0:
            raise SungenError(f"l2: must be >= 0, got {self.l2}")
        if self.batch_size is not None and self.batch_size < 1:
            raise SungenError(f"batch_size: must be >= 1, got {self.batch_size}")

    def train_setting(self, key: str):
        value = getattr(self, key)
        return TRAIN_DEFAULTS[self.name][key] if value is None else value
