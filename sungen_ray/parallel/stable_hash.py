"""One pseudo-random value per sample id, the same whichever worker holds the sample: the
reweighting's validation subset and the inner loop's mini-batches are drawn from it, so they do
not depend on how the pool is sharded."""

from __future__ import annotations

import numpy as np


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser over uint64 values (arithmetic wraps modulo 2**64 on purpose)."""
    with np.errstate(over="ignore"):
        x = x.astype(np.uint64)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))
