"""Hashed word + bigram features for the bag-of-words TAM, computed with numpy only.

Hashing instead of a vocabulary means nothing has to be agreed across workers (each worker
encodes its own shard and gets the same ids for the same words), and the whole corpus is
tokenised by array operations: texts are joined into one byte buffer, token boundaries are
found with shifted comparisons and every token's polynomial hash comes from one prefix sum.
A million short texts take seconds; there is no Python loop over tokens.
"""

from __future__ import annotations

import numpy as np

_BASE = np.uint64(0x100000001B3)  # odd, so invertible modulo 2**64
_BIGRAM_SALT = np.uint64(0x9E3779B97F4A7C15)

# byte classes: 0 = separator (space, control), 1 = word character, 2 = punctuation (its own token)
_CLASS = np.zeros(256, dtype=np.uint8)
for _c in b"abcdefghijklmnopqrstuvwxyz0123456789'":
    _CLASS[_c] = 1
_CLASS[128:] = 1  # UTF-8 continuation/lead bytes belong to words
for _c in b'!?.,;:"()-':
    _CLASS[_c] = 2


def _inverse(a: np.uint64) -> np.uint64:
    """Multiplicative inverse of an odd number modulo 2**64 (Newton iteration)."""
    x, a = int(a), int(a)
    inv = a
    for _ in range(6):
        inv = (inv * (2 - x * inv)) % (1 << 64)
    return np.uint64(inv)


_BASE_INV = _inverse(_BASE)


def _mix(h: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: spreads the polynomial hash over all bits before taking buckets."""
    h = h ^ (h >> np.uint64(30))
    h = h * np.uint64(0xBF58476D1CE4E5B9)
    h = h ^ (h >> np.uint64(27))
    h = h * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


def _powers(base: np.uint64, n: int) -> np.ndarray:
    out = np.full(n, base, dtype=np.uint64)
    out[0] = 1
    return np.cumprod(out, dtype=np.uint64)


def hash_ngrams(texts: list[str], buckets: int, bigrams: bool = True, chunk: int = 20_000):
    """Token ids in ``[0, buckets)`` for lower-cased words (and adjacent-word bigrams).

    Returns ``(tokens, offsets)``: int32 ids of all texts concatenated and int64 offsets of
    length ``len(texts) + 1`` (text ``i`` owns ``tokens[offsets[i]:offsets[i+1]]``).
    """
    parts, counts = [], []
    with np.errstate(over="ignore"):
        for start in range(0, len(texts), chunk):
            tok, cnt = _hash_chunk(texts[start : start + chunk], buckets, bigrams)
            parts.append(tok)
            counts.append(cnt)
    tokens = np.concatenate(parts) if parts else np.zeros(0, np.int32)
    counts = np.concatenate(counts) if counts else np.zeros(0, np.int64)
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return tokens, offsets


def _hash_chunk(texts: list[str], buckets: int, bigrams: bool):
    # "\n" separates texts; it is a separator byte, so no token spans two texts.
    buf = np.frombuffer(("\n".join(texts) + "\n").lower().encode("utf-8", "replace"), dtype=np.uint8)
    n = len(buf)
    cls = _CLASS[buf]
    prev = np.concatenate(([0], cls[:-1]))
    nxt = np.concatenate((cls[1:], [0]))
    starts = np.flatnonzero((cls == 2) | ((cls == 1) & (prev != 1)))
    ends = np.flatnonzero((cls == 2) | ((cls == 1) & (nxt != 1))) + 1
    doc_of_byte = np.cumsum(buf == 10) - (buf == 10)  # newline at the end of text i still belongs to i
    doc = doc_of_byte[starts]

    # polynomial hash of buf[s:e] = (P[e] - P[s]) * BASE**-s with P the prefix sum of buf[j] * BASE**j
    prefix = np.zeros(n + 1, dtype=np.uint64)
    np.cumsum((buf.astype(np.uint64) + np.uint64(1)) * _powers(_BASE, n), out=prefix[1:])
    h = (prefix[ends] - prefix[starts]) * _powers(_BASE_INV, n)[starts]
    h = _mix(h + (ends - starts).astype(np.uint64))
    ids, owner = [h], [doc]
    if bigrams and len(h) > 1:
        same = doc[1:] == doc[:-1]
        ids.append(_mix(h[:-1][same] * _BIGRAM_SALT + h[1:][same]))
        owner.append(doc[:-1][same])
    ids = np.concatenate(ids)
    owner = np.concatenate(owner)
    order = np.argsort(owner, kind="stable")
    tokens = (ids[order] % np.uint64(buckets)).astype(np.int32)
    counts = np.bincount(owner, minlength=len(texts)).astype(np.int64)
    return tokens, counts
