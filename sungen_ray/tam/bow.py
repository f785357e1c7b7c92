"""fastText-style bag of hashed words and bigrams: the fast CPU TAM for million-sample runs.

A mean of learned n-gram embeddings followed by a linear layer. It has no vocabulary (ids
are hashes, see ``hashing.py``), so each worker encodes its own shard independently.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from sungen_ray.tam.encoded import Ragged
from sungen_ray.tam.hashing import hash_ngrams


@dataclass
class BowEncoder:
    buckets: int = 1 << 18
    bigrams: bool = True

    def encode(self, texts: list[str]) -> Ragged:
        tokens, offsets = hash_ngrams(texts, self.buckets, self.bigrams)
        return Ragged(torch.from_numpy(tokens), torch.from_numpy(offsets))

    def state(self) -> dict:
        return {"buckets": self.buckets, "bigrams": self.bigrams}


class _MeanBag(torch.autograd.Function):
    """``F.embedding_bag(mode="mean")`` with a forward-mode rule.

    PyTorch has no forward-mode derivative for embedding_bag, but a bag mean is linear in the
    table, so its derivative along a tangent table is the same bag over the tangent. That lets
    ``torch.func.jvp`` compute per-sample alignments for this model in one forward pass.
    """

    @staticmethod
    def forward(weight, tokens, offsets):
        return F.embedding_bag(tokens, weight, offsets, mode="mean")

    @staticmethod
    def setup_context(ctx, inputs, output):
        weight, tokens, offsets = inputs
        ctx.save_for_backward(tokens, offsets)
        ctx.save_for_forward(tokens, offsets)
        ctx.table_shape = weight.shape

    @staticmethod
    def backward(ctx, grad_out):
        tokens, offsets = ctx.saved_tensors
        return bag_mean_backward(tokens, offsets, grad_out, ctx.table_shape[0]), None, None

    @staticmethod
    def jvp(ctx, weight_t, tokens_t, offsets_t):
        tokens, offsets = ctx.saved_tensors
        return F.embedding_bag(tokens, weight_t, offsets, mode="mean")


def bag_mean_backward(tokens: torch.Tensor, offsets: torch.Tensor, grad_out: torch.Tensor, num_rows: int):
    """The table gradient of a bag mean, A^T grad_out with A[bag, token's row] = 1 / bag length, as a
    CSR sparse-dense product: sorting the batch's ids (int32, the table's row count allows it) is
    cheaper than repeating every bag's gradient per token and scatter-adding it (measured in
    benchmarks/bow_step_cpu.py)."""
    n_tokens, n_bags = len(tokens), len(offsets)
    index = torch.int32 if max(num_rows, n_tokens, n_bags) < 2**31 else torch.int64
    lens = torch.diff(offsets, append=offsets.new_tensor([n_tokens]))
    _, order = torch.sort(tokens.to(index))
    bag_of_token = torch.repeat_interleave(
        torch.arange(n_bags, dtype=index, device=tokens.device), lens, output_size=n_tokens
    )
    cols = bag_of_token[order]
    vals = (1.0 / lens.clamp(min=1).to(grad_out.dtype))[cols]
    crow = torch.zeros(num_rows + 1, dtype=index, device=tokens.device)
    torch.cumsum(torch.bincount(tokens, minlength=num_rows), 0, out=crow[1:])
    with warnings.catch_warnings():  # torch warns once that sparse CSR is a beta feature
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        a_t = torch.sparse_csr_tensor(crow, cols, vals, (num_rows, n_bags), check_invariants=False)
    return a_t @ grad_out


class BowModel(nn.Module):
    """With ``sparse`` the inner training steps only the table rows its batch touches (see
    ``tam.train``): ``sparse_table`` names the table and the input position of its row ids."""

    def __init__(self, buckets: int, num_labels: int, dim: int = 32, sparse: bool = True):
        super().__init__()
        self.sparse_table = ("embed.weight", 0) if sparse else None
        self.embed = nn.EmbeddingBag(buckets, dim, mode="mean")
        self.out = nn.Linear(dim, num_labels)
        nn.init.uniform_(self.embed.weight, -1.0 / dim, 1.0 / dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, tokens: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return self.out(_MeanBag.apply(self.embed.weight, tokens, offsets))
