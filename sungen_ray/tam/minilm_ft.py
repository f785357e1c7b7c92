"""all-MiniLM-L6-v2 fine-tuned whole, with a linear head on its mean-pooled output.

The stronger final TAM (the role DistilBERT plays in the paper): frozen MiniLM features only move
a head, this moves every encoder weight too. Texts are tokenized once (``Padded`` ids, 0 =
[PAD]); the model masks by the true lengths. It is a final-model TAM: as the reweighting's inner
problem it would fine-tune 22M weights per outer iteration, so ``reweight`` refuses it (frozen
``minilm`` is the inner TAM).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import torch
from torch import nn

from sungen_ray.tam.encoded import Padded
from sungen_ray.tam.minilm import model_dir

ENCODE_CHUNK = 4096  # texts tokenized per call


@cache
def _tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir())


@dataclass
class MiniLMTokenEncoder:
    max_len: int = 64

    def encode(self, texts: list[str]) -> Padded:
        ids, lengths = [], []
        for start in range(0, len(texts), ENCODE_CHUNK):
            batch = _tokenizer()(
                list(texts[start : start + ENCODE_CHUNK]),
                padding="max_length",
                truncation=True,
                max_length=self.max_len,
                return_tensors="pt",
            )
            ids.append(batch["input_ids"].to(torch.int32))
            lengths.append(batch["attention_mask"].sum(1).clamp(min=1))
        if not ids:
            return Padded(torch.zeros(0, self.max_len, dtype=torch.int32), torch.zeros(0, dtype=torch.int64))
        return Padded(torch.cat(ids), torch.cat(lengths))

    def state(self) -> dict:
        return {"max_len": self.max_len}


class FineTunedMiniLM(nn.Module):
    def __init__(self, num_labels: int):
        super().__init__()
        from transformers import AutoModel

        self.encoder = AutoModel.from_pretrained(model_dir())
        self.head = nn.Linear(self.encoder.config.hidden_size, num_labels)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = torch.arange(ids.shape[1], device=ids.device)[None, :] < lengths[:, None]
        hidden = self.encoder(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        pooled = (hidden * mask[..., None]).sum(1) / lengths[:, None].to(hidden.dtype)
        return self.head(pooled)
