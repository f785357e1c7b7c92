"""One pseudo-random value per sample id, the same whichever worker holds the sample: the
reweighting's validation subset and the inner loop's mini-batches are drawn from it, so they do
not depend on how the pool is sharded. Torch int64 tensors, so the hash runs where the ids live
(CPU or GPU); int64 multiplication wraps with the bits of uint64 multiplication."""

from __future__ import annotations

import torch


def signed64(x: int) -> int:
    """A uint64 constant as the int64 with the same bits."""
    x &= (1 << 64) - 1
    return x - (1 << 64) if x >= 1 << 63 else x


def shr64(x: torch.Tensor, k: int) -> torch.Tensor:
    """Logical right shift of int64 bit patterns (torch's >> is arithmetic)."""
    return (x >> k) & ((1 << (64 - k)) - 1)


def splitmix64(x: torch.Tensor) -> torch.Tensor:
    """The splitmix64 finaliser on int64 tensors (same bits as the uint64 reference)."""
    x = (x ^ shr64(x, 30)) * signed64(0xBF58476D1CE4E5B9)
    x = (x ^ shr64(x, 27)) * signed64(0x94D049BB133111EB)
    return x ^ shr64(x, 31)
