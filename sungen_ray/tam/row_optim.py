"""Row-wise optimisers for an embedding table whose steps touch few of its rows.

A bag-of-words step touches the rows of the words in its batch, a small part of a 2^18-row
hashed table; updating only those rows makes the step cost follow the batch, not the table.
Adam here is lazy (SparseAdam's rule): a row's moments move only on steps that touch it, with the
bias correction of the global step count. With several workers each steps the rows of its own
range of the table (``owned``) and keeps moments for those rows only; the others' new rows reach
it through the collectives (``tam.train.sharded_row_step``), so the tables stay identical.
"""

from __future__ import annotations

import torch


def _wide(t: torch.Tensor) -> torch.Tensor:
    """``t`` (rows x features) viewed with 16-byte elements where its rows allow: CPU index kernels
    move one element at a time, so fewer, wider elements per row move the same bytes faster
    (measured on 77,792 rows x 32 floats: index_select 1.9 -> 1.1 ms, index_copy_ 2.2 -> 1.3 ms)."""
    if t.dim() == 2 and t.is_contiguous() and (t.shape[1] * t.element_size()) % 16 == 0 and t.dtype.is_floating_point:
        return t.view(torch.complex128)
    return t


def gather_rows(t: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``t.index_select(0, rows)``, moving wide elements (see ``_wide``)."""
    return _wide(t).index_select(0, rows).view(t.dtype)


def scatter_rows(t: torch.Tensor, rows: torch.Tensor, values: torch.Tensor) -> None:
    """``t.index_copy_(0, rows, values)``, moving wide elements when both sides allow it."""
    wide_t, wide_v = _wide(t), _wide(values)
    if wide_t.dtype == wide_v.dtype and wide_t.dtype != t.dtype:
        wide_t.index_copy_(0, rows, wide_v)
    else:
        t.index_copy_(0, rows, values)


class RowAdam:
    def __init__(self, table: torch.Tensor, lr: float, betas=(0.9, 0.999), eps: float = 1e-8, owned=None):
        self.table, self.lr, self.betas, self.eps = table, lr, betas, eps
        self.first, last = owned or (0, len(table))  # the rows this optimizer may step: moments for those only
        self.m = table.new_zeros((last - self.first, *table.shape[1:]))
        self.v = torch.zeros_like(self.m)
        self.steps = torch.zeros((), dtype=torch.float32, device=table.device)

    @torch.no_grad()
    def step(self, rows: torch.Tensor, grad: torch.Tensor, current: torch.Tensor | None = None) -> torch.Tensor:
        """Adam on ``rows`` of the table with their ``grad``; returns the rows' new values. ``current``
        is a copy of those rows when the caller already gathered them (the step's leaf), saving one
        gather. One gather of each moment, torch's fused Adam kernel on the gathered rows (one pass
        instead of a dozen) and one index_copy_ back per tensor (index_select / index_copy_: faster
        on CPU than tensor[rows])."""
        self.steps += 1
        rows_now = gather_rows(self.table, rows) if current is None else current
        if not len(rows):
            return rows_now
        at = rows - self.first if self.first else rows
        m, v = gather_rows(self.m, at), gather_rows(self.v, at)
        torch._fused_adam_(
            [rows_now], [grad], [m], [v], [], [self.steps],
            lr=self.lr, beta1=self.betas[0], beta2=self.betas[1], weight_decay=0.0, eps=self.eps,
            amsgrad=False, maximize=False,
        )  # fmt: skip
        scatter_rows(self.m, at, m)
        scatter_rows(self.v, at, v)
        scatter_rows(self.table, rows, rows_now)
        return rows_now


class RowSGD:
    def __init__(self, table: torch.Tensor, lr: float):
        self.table, self.lr = table, lr

    @torch.no_grad()
    def step(self, rows: torch.Tensor, grad: torch.Tensor, current: torch.Tensor | None = None) -> torch.Tensor:
        """SGD on ``rows``; returns their new values (``current``: a copy of the rows, updated in place)."""
        rows_now = gather_rows(self.table, rows) if current is None else current
        rows_now.add_(grad, alpha=-self.lr)
        scatter_rows(self.table, rows, rows_now)
        return rows_now


def make_row_optimizer(name: str, table: torch.Tensor, lr: float, owned=None) -> RowAdam | RowSGD:
    return RowSGD(table, lr) if name == "sgd" else RowAdam(table, lr, owned=owned)
