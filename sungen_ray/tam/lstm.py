"""The paper's TAM: a one-layer bidirectional LSTM over a word vocabulary from the synthetic text.

The vocabulary (up to 50k words, ties broken by the trainer's deterministic ordering) and the
encoding both run in HF ``tokenizers`` (Rust), so a million texts need no Python token loop.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
from torch import nn

from sungen_ray.tam.encoded import Padded

PAD, UNK = "[PAD]", "[UNK]"


def build_vocab(
    texts: Iterable[str] | Iterable[list[str]], vocab_size: int = 50_000, min_frequency: int = 1
) -> Tokenizer:
    tok = Tokenizer(models.WordLevel(unk_token=UNK))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=[PAD, UNK])
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


@dataclass
class LstmEncoder:
    tokenizer: Tokenizer
    max_len: int = 64

    @classmethod
    def fit(
        cls, texts: Iterable[str] | Iterable[list[str]], vocab_size: int = 50_000, max_len: int = 64
    ) -> LstmEncoder:
        return cls(build_vocab(texts, vocab_size), max_len)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode(self, texts: list[str]) -> Padded:
        tok = Tokenizer.from_str(self.tokenizer.to_str())  # a copy: padding settings stay local
        tok.enable_truncation(self.max_len)
        tok.enable_padding(pad_id=0, pad_token=PAD, length=self.max_len)
        ids = np.array([e.ids for e in tok.encode_batch(texts)], dtype=np.int32).reshape(len(texts), self.max_len)
        lengths = np.maximum((ids != 0).sum(1), 1)  # an empty text becomes one padding step
        return Padded(torch.from_numpy(ids), torch.from_numpy(lengths.astype(np.int64)))

    def state(self) -> dict:
        return {"tokenizer": json.loads(self.tokenizer.to_str()), "max_len": self.max_len}


class LstmModel(nn.Module):
    def __init__(self, vocab_size: int, num_labels: int, emb_dim: int = 100, hidden: int = 300):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, emb_dim, padding_idx=0)
        self.lstm = nn.LSTM(emb_dim, hidden, num_layers=1, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * hidden, num_labels)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = nn.utils.rnn.pack_padded_sequence(
            self.embed(ids), lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        _, (h, _) = self.lstm(packed)
        return self.out(torch.cat([h[0], h[1]], dim=1))
