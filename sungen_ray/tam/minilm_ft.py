"""all-MiniLM-L6-v2 fine-tuned whole, as a standard ``BertForSequenceClassification``.

The stronger final TAM (the role DistilBERT plays in the paper): frozen MiniLM features only move
a head, this moves every encoder weight too. The classifier is the stock transformers one (the
[CLS] token through BERT's pooler, dropout and a linear layer), so the saved model is an ordinary
transformers directory that ``AutoModelForSequenceClassification``, ``AutoTokenizer`` and
``pipeline("text-classification")`` load with no custom code (see ``tam.final.save``). Releases
before issue 23 mean-pooled the encoder into a bare linear head, which no standard class does;
``MeanPooledMiniLM`` still reads the models they saved.

Texts are tokenized once (``Padded`` ids, 0 = [PAD]); the model masks by the true lengths.
Training truncates at ``max_len`` tokens (the cost of a step grows with it); a trained model reads
each text whole, up to the model's 512 positions, as the transformers pipeline does, so
``sungen-ray predict`` and the pipeline give the same label. It is a final-model TAM: as the
reweighting's inner problem it would fine-tune 22M weights per outer iteration, so ``reweight``
refuses it (frozen ``minilm`` is the inner TAM).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch
from torch import nn

from sungen_ray.tam.encoded import Padded
from sungen_ray.tam.minilm import model_dir

ENCODE_CHUNK = 4096  # texts tokenized per call
INFER_ROWS = 64  # rows per forward pass at inference, grouped by length so little padding is computed


@contextlib.contextmanager
def _quiet_transformers():
    """No 'weights newly initialized' warning and no loading progress bar: a fresh classifier head
    is what a fine-tuning start is, not news for the user."""
    from transformers.utils import logging

    verbosity, bar = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        if bar:
            logging.enable_progress_bar()


@cache
def tokenizer(source: str | None = None):
    """The tokenizer of a saved model directory, or (``None``) of the packaged MiniLM."""
    from transformers import AutoTokenizer

    with _quiet_transformers():
        return AutoTokenizer.from_pretrained(source or model_dir())


@dataclass
class MiniLMTokenEncoder:
    max_len: int = 64
    # True (training): every row max_len wide. False (inference): as wide as the longest text.
    pad_to_max: bool = True
    source: str | None = None  # the tokenizer's directory; None: the packaged MiniLM

    def encode(self, texts: list[str]) -> Padded:
        tok = tokenizer(self.source)
        ids, lengths = [], []
        for start in range(0, len(texts), ENCODE_CHUNK):
            batch = tok(
                list(texts[start : start + ENCODE_CHUNK]),
                padding="max_length" if self.pad_to_max else "longest",
                truncation=True,
                max_length=self.max_len,
                return_tensors="pt",
            )
            ids.append(batch["input_ids"].to(torch.int32))
            lengths.append(batch["attention_mask"].sum(1).clamp(min=1))
        if not ids:
            return Padded(torch.zeros(0, self.max_len, dtype=torch.int32), torch.zeros(0, dtype=torch.int64))
        width = max(x.shape[1] for x in ids)
        ids = [nn.functional.pad(x, (0, width - x.shape[1])) for x in ids]  # 0 = [PAD], masked anyway
        return Padded(torch.cat(ids), torch.cat(lengths))

    def for_inference(self, model: MiniLMClassifier, source: str | None = None) -> MiniLMTokenEncoder:
        """Whole texts, up to what the model reads (512 positions), as the transformers pipeline
        tokenizes them."""
        return MiniLMTokenEncoder(max_len=model.max_positions, pad_to_max=False, source=source or self.source)

    def state(self) -> dict:
        return {"max_len": self.max_len}


class MiniLMClassifier(nn.Module):
    """``BertForSequenceClassification`` (in ``.hf``) over ``Padded`` ids: fresh from the packaged
    MiniLM (its pooler included, a new classifier layer), or a saved directory (``source``)."""

    def __init__(self, num_labels: int, source: str | Path | None = None):
        super().__init__()
        from transformers import AutoModelForSequenceClassification, BertForSequenceClassification

        with _quiet_transformers():
            if source is None:
                self.hf = BertForSequenceClassification.from_pretrained(model_dir(), num_labels=num_labels)
            else:  # safetensors only: loading a model someone hands you unpickles nothing
                self.hf = AutoModelForSequenceClassification.from_pretrained(source, use_safetensors=True)
        self.num_labels = self.hf.config.num_labels

    @property
    def max_positions(self) -> int:
        return int(self.hf.config.max_position_embeddings)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if self.training or len(ids) <= INFER_ROWS:
            return self._logits(ids, lengths)
        out = None
        for rows in torch.argsort(lengths).split(INFER_ROWS):
            logits = self._logits(ids[rows], lengths[rows])
            if out is None:
                out = logits.new_empty(len(ids), logits.shape[1])
            out[rows] = logits
        return out

    def _logits(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        width = int(lengths.max())
        mask = torch.arange(width, device=ids.device)[None, :] < lengths[:, None]
        return self.hf(input_ids=ids[:, :width].long(), attention_mask=mask.long()).logits


class MeanPooledMiniLM(nn.Module):
    """The minilm-ft of releases before issue 23 (mean pooling into a linear head): only to read
    the models they saved (``model.json`` version 1)."""

    def __init__(self, num_labels: int):
        super().__init__()
        from transformers import AutoConfig, AutoModel

        self.encoder = AutoModel.from_config(AutoConfig.from_pretrained(model_dir()))
        self.head = nn.Linear(self.encoder.config.hidden_size, num_labels)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = torch.arange(ids.shape[1], device=ids.device)[None, :] < lengths[:, None]
        hidden = self.encoder(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        pooled = (hidden * mask[..., None]).sum(1) / lengths[:, None].to(hidden.dtype)
        return self.head(pooled)
