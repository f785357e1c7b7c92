"""Pre-encoded inputs: every TAM trains on tensors, so an outer iteration never tokenises.

Each container holds one whole shard and hands out mini-batches by row index with tensor
indexing only (no per-sample Python), which keeps an inner epoch over a million rows cheap.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Ragged:
    """Variable-length token ids stored flat (``tokens``) with ``offsets`` of length n + 1."""

    tokens: torch.Tensor  # int32 or int64
    offsets: torch.Tensor  # int64

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def batch(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(flat token ids, bag offsets) for ``rows``, the input format of ``nn.EmbeddingBag``, both in
        the stored ids' dtype (int32 from hashing: embedding_bag takes it as is when the offsets
        match, where int64 offsets would make it copy the ids to int64)."""
        dev = self.offsets.device
        starts = self.offsets[rows]
        lens = self.offsets[rows + 1] - starts
        bag = torch.zeros(len(rows), dtype=torch.int64, device=dev)
        torch.cumsum(lens[:-1], 0, out=bag[1:])
        total = int(lens.sum())
        pos = torch.arange(total, dtype=torch.int64, device=dev)
        pos += torch.repeat_interleave(starts - bag, lens, output_size=total)
        return self.tokens[pos], bag.to(self.tokens.dtype)

    def subset(self, rows: torch.Tensor) -> Ragged:
        tokens, bag = self.batch(rows)
        offsets = torch.cat([bag.long(), torch.tensor([len(tokens)], device=bag.device)])
        return Ragged(tokens, offsets)

    def to(self, device) -> Ragged:
        return Ragged(self.tokens.to(device), self.offsets.to(device))


@dataclass
class Padded:
    """Token ids padded to a fixed width (0 = padding) with true ``lengths`` (at least 1)."""

    ids: torch.Tensor  # (n, width) int32
    lengths: torch.Tensor  # (n,) int64

    def __len__(self) -> int:
        return len(self.lengths)

    def batch(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = self.lengths[rows]
        width = int(lengths.max()) if len(rows) else 1
        return self.ids[rows, :width].long(), lengths

    def subset(self, rows: torch.Tensor) -> Padded:
        return Padded(self.ids[rows], self.lengths[rows])

    def to(self, device) -> Padded:
        return Padded(self.ids.to(device), self.lengths.to(device))


@dataclass
class Dense:
    """Fixed-size feature vectors (e.g. frozen sentence embeddings)."""

    features: torch.Tensor  # (n, dim) float32

    def __len__(self) -> int:
        return len(self.features)

    def batch(self, rows: torch.Tensor) -> tuple[torch.Tensor]:
        return (self.features[rows],)

    def subset(self, rows: torch.Tensor) -> Dense:
        return Dense(self.features[rows])

    def to(self, device) -> Dense:
        return Dense(self.features.to(device))


Encoded = Ragged | Padded | Dense


def concat_encoded(parts: list[Encoded]) -> Encoded:
    """The rows of ``parts`` one after another (a shard encoded chunk by chunk)."""
    first = parts[0]
    if isinstance(first, Ragged):
        shifts = torch.tensor([0] + [len(p.tokens) for p in parts[:-1]]).cumsum(0)
        offsets = [p.offsets[:-1] + s for p, s in zip(parts, shifts)]
        return Ragged(
            torch.cat([p.tokens for p in parts]),
            torch.cat([*offsets, torch.tensor([sum(len(p.tokens) for p in parts)])]),
        )
    if isinstance(first, Padded):
        return Padded(torch.cat([p.ids for p in parts]), torch.cat([p.lengths for p in parts]))
    return Dense(torch.cat([p.features for p in parts]))
