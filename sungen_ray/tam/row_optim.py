"""Row-wise optimisers for an embedding table whose steps touch few of its rows.

A bag-of-words step touches the rows of the words in its batch, a small part of a 2^18-row
hashed table; updating only those rows makes the step cost follow the batch, not the table.
Adam here is lazy (SparseAdam's rule): a row's moments move only on steps that touch it, with the
bias correction of the global step count. Every worker updates the same rows with the same
all-reduced gradient, so the tables stay identical across workers.
"""

from __future__ import annotations

import torch


class RowAdam:
    def __init__(self, table: torch.Tensor, lr: float, betas=(0.9, 0.999), eps: float = 1e-8):
        self.table, self.lr, self.betas, self.eps = table, lr, betas, eps
        self.m = torch.zeros_like(table)
        self.v = torch.zeros_like(table)
        self.steps = 0

    @torch.no_grad()
    def step(self, rows: torch.Tensor, grad: torch.Tensor) -> None:
        b1, b2 = self.betas
        self.steps += 1
        # index_select / index_copy_ / index_add_: much faster on CPU than tensor[rows] indexing
        m = self.m.index_select(0, rows).mul_(b1).add_(grad, alpha=1 - b1)
        v = self.v.index_select(0, rows).mul_(b2).addcmul_(grad, grad, value=1 - b2)
        self.m.index_copy_(0, rows, m)
        self.v.index_copy_(0, rows, v)
        denom = v.div_(1 - b2**self.steps).sqrt_().add_(self.eps)
        self.table.index_add_(0, rows, m.div_(denom), alpha=-self.lr / (1 - b1**self.steps))


class RowSGD:
    def __init__(self, table: torch.Tensor, lr: float):
        self.table, self.lr = table, lr

    @torch.no_grad()
    def step(self, rows: torch.Tensor, grad: torch.Tensor) -> None:
        self.table.index_add_(0, rows, grad, alpha=-self.lr)


def make_row_optimizer(name: str, table: torch.Tensor, lr: float) -> RowAdam | RowSGD:
    return RowSGD(table, lr) if name == "sgd" else RowAdam(table, lr)
