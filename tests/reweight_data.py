"""A tiny real-text sentiment set built in the tests themselves (no external data needed)."""

from __future__ import annotations

import numpy as np

POS = ["great", "wonderful", "moving", "brilliant", "funny", "charming", "superb", "delightful", "beautiful", "smart"]
NEG = ["boring", "awful", "dull", "terrible", "clumsy", "tedious", "stupid", "bland", "painful", "messy"]
NOUNS = ["film", "movie", "story", "script", "cast", "plot", "ending", "director", "score", "acting"]
FILLER = ["the", "a", "this", "really", "quite", "very", "is", "was", "and", "with", "its", "overall"]


def sentiment_texts(n: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=n)
    texts = []
    for y in labels:
        words = list(rng.choice(FILLER, size=4)) + list(rng.choice(NOUNS, size=2))
        words += list(rng.choice(POS if y == 1 else NEG, size=2))
        rng.shuffle(words)
        texts.append(" ".join(words))
    return texts, labels.astype(np.int64)


def flip(labels: np.ndarray, share: float, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    flipped = rng.random(len(labels)) < share
    return np.where(flipped, 1 - labels, labels), flipped
