"""Training and prediction for every TAM, data-parallel through a collectives object.

The same ``train`` is the inner problem of reweighting (weighted, from a fixed phi_0) and
the final TAM fit on the curated set (uniform or weighted), so the two cannot drift apart.
With several workers each trains on its own shard: every step the per-worker gradients are
summed through the collectives (the DDP all-reduce, done by hand so the math is visible).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from sungen_ray.parallel.collectives import Collectives, LocalCollectives, all_reduce_grads
from sungen_ray.parallel.stable_hash import shr64, splitmix64
from sungen_ray.tam.encoded import Encoded
from sungen_ray.tam.registry import TamConfig
from sungen_ray.tam.row_optim import gather_rows, make_row_optimizer, scatter_rows


def seeded_generator(*keys: int) -> torch.Generator:
    """A generator that depends only on ``keys`` (seed, purpose, epoch, rank...), never on history,
    so a resumed run draws exactly what the uninterrupted run drew."""
    state = np.random.SeedSequence([int(k) & 0xFFFFFFFF for k in keys]).generate_state(2)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def make_optimizer(name: str, params, lr: float) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    return torch.optim.Adam(params, lr=lr)


def train(
    model: nn.Module,
    data: Encoded,
    labels: torch.Tensor,
    weights: torch.Tensor | None = None,
    *,
    cfg: TamConfig,
    epochs: int = 1,
    seed: int = 0,
    lr: float | None = None,
    coll: Collectives | None = None,
    ids: torch.Tensor | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> list[float]:
    """Minimise sum_i w_i CE_i / sum_i w_i over all shards; returns the weighted mean loss per epoch.

    Every worker takes the same number of steps (set by the global sample count), so global
    batches are about ``batch_size`` whatever the number of workers. With ``ids`` (stable global
    sample ids) a sample's step in an epoch is a hash of (id, seed, epoch): the global batch of
    every step is then the same set of samples for any number of workers, so W workers compute
    what one process computes (up to the order of float additions). Without ids each worker
    shuffles its own shard. The loss per step is normalised by the global mean weight, which
    makes a step the usual mean-loss step when all weights are 1. ``on_step(done, total)`` is
    called after every step (progress of a long fit).
    """
    coll = coll or LocalCollectives()
    device = labels.device
    n_local = len(data)
    w = torch.ones(n_local, device=device) if weights is None else weights.detach().float()
    totals = coll.all_reduce_sum(torch.tensor([float(n_local), float(w.sum())], dtype=torch.float64, device=device))
    n_global, s_global = float(totals[0]), float(totals[1])
    if n_global == 0 or s_global <= 0:
        return [float("nan")] * epochs
    batch_size = cfg.train_setting("batch_size")
    steps = max(1, math.ceil(n_global / batch_size))
    step_norm = (s_global / n_global) * (n_global / steps)  # mean weight x global batch size
    table_name, ids_at = getattr(model, "sparse_table", None) or (None, None)
    named = {k: p for k, p in model.named_parameters() if p.requires_grad}
    params = [p for k, p in named.items() if k != table_name]
    optimizer, step_lr = cfg.train_setting("optimizer"), lr or cfg.train_setting("lr")
    opt = make_optimizer(optimizer, params, step_lr)
    rows_opt = None
    if table_name:
        owned = row_range(len(named[table_name]), coll.rank, coll.world_size)
        rows_opt = make_row_optimizer(optimizer, named[table_name].data, step_lr, owned)
    for p in params:  # a worker whose share of a step is empty still all-reduces (zero) gradients
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    model.train()
    losses = []
    for epoch in range(epochs):
        epoch_sum = torch.zeros((), dtype=torch.float64, device=device)
        for step, rows in enumerate(_step_rows(n_local, steps, seed, epoch, coll.rank, ids, device)):
            if on_step is not None and step:
                on_step(epoch * steps + step, epochs * steps)
            opt.zero_grad(set_to_none=False)
            batch = data.batch(rows)
            if table_name is None:
                if len(rows):
                    epoch_sum += _backward(model(*batch), labels[rows], w[rows], step_norm)
                all_reduce_grads(coll, [p.grad for p in params])
                opt.step()
                continue
            touched, local_ids = touched_rows(coll, batch[ids_at], len(named[table_name]))
            local = list(batch)
            local[ids_at] = local_ids
            leaf = gather_rows(named[table_name].detach(), touched).requires_grad_(True)
            if len(rows):
                logits = functional_call(model, {table_name: leaf}, tuple(local))
                epoch_sum += _backward(logits, labels[rows], w[rows], step_norm)
            row_grad = leaf.grad if leaf.grad is not None else torch.zeros_like(leaf)
            all_reduce_grads(coll, [p.grad for p in params])
            opt.step()
            if coll.world_size == 1:
                rows_opt.step(touched, row_grad, leaf.detach())
            else:
                sharded_row_step(coll, rows_opt, touched, row_grad, leaf.detach())
        losses.append(float(coll.all_reduce_sum(epoch_sum)) / s_global)
        if on_step is not None:
            on_step((epoch + 1) * steps, epochs * steps)
    return losses


def touched_rows(coll: Collectives, ids: torch.Tensor, num_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(the sorted table rows that any worker's share of this step touches, ``ids`` as positions
    among them). Every worker gets the same rows in the same order, so the row gradients line up
    across workers and W workers step what one process steps. Finding them costs a byte per table
    row (a mask, summed across workers); the gradients, their exchange and the optimizer cost only
    the touched rows."""
    hit = torch.zeros(num_rows, dtype=torch.uint8 if coll.world_size < 256 else torch.int32, device=ids.device)
    hit[ids] = 1
    if coll.world_size > 1:
        coll.all_reduce_sum(hit)
    touched = torch.nonzero(hit).squeeze(1)
    position = torch.empty(num_rows, dtype=ids.dtype, device=ids.device)  # int32 ids: int32 positions
    position[touched] = torch.arange(len(touched), dtype=ids.dtype, device=ids.device)
    return touched, position[ids]


def row_range(num_rows: int, rank: int, world: int) -> tuple[int, int]:
    """The table rows worker ``rank`` steps in ``sharded_row_step``: [rank, rank + 1) x num_rows / W."""
    return -(-rank * num_rows // world), -(-(rank + 1) * num_rows // world)


def sharded_row_step(coll: Collectives, rows_opt, touched: torch.Tensor, grad: torch.Tensor, current: torch.Tensor):
    """The row optimizer's step on the touched rows, split across workers: worker q owns the table rows
    ``row_range(num_rows, q, W)``. Each worker sends every owner the gradient rows it owns (an
    all-to-all: the rows are sorted, so an owner's rows are one slice), sums what it receives, steps
    its rows (its share of the moments is the only one it ever touches) and sends their new values
    to everyone. Every row gets the same summed gradient and the same update as with an all-reduce
    and every worker stepping every row, at 1 / W of the optimizer work and with less traffic than
    the all-reduce (measured on gloo). ``current``: the touched rows' values (updated in place)."""
    world, rank, table = coll.world_size, coll.rank, rows_opt.table
    num_rows, dim = table.shape
    starts = torch.tensor([row_range(num_rows, q, world)[0] for q in range(world)] + [num_rows], device=touched.device)
    bounds = torch.searchsorted(touched, starts).tolist()
    counts = [b - a for a, b in zip(bounds, bounds[1:])]
    lo, hi = bounds[rank], bounds[rank + 1]
    received = coll.all_to_all(grad, counts, [counts[rank]] * world).view(world, counts[rank], dim)
    mine = received[0].clone()
    for q in range(1, world):  # summed in rank order, in place
        mine += received[q]
    new = rows_opt.step(touched[lo:hi], mine, current[lo:hi])
    # the new rows go to every other worker (none to itself: the owner has written them)
    others = [0 if q == rank else counts[q] for q in range(world)]
    sent = new.expand(world - 1, *new.shape).reshape(-1, dim)  # a view when W = 2
    current = coll.all_to_all(sent, [0 if q == rank else counts[rank] for q in range(world)], others)
    at = 0
    for q in range(world):
        if others[q]:
            scatter_rows(table, touched[bounds[q] : bounds[q + 1]], current[at : at + others[q]])
            at += others[q]


def fit_full_batch(
    model: nn.Module,
    data: Encoded,
    labels: torch.Tensor,
    weights: torch.Tensor | None,
    *,
    l2: float,
    max_iter: int = 500,
    tol: float = 1e-7,
) -> list[float]:
    """Minimise the weighted mean CE + l2/2 |params|^2 over all rows at once with L-BFGS, to
    convergence: for a linear head over frozen features this is multinomial logistic regression,
    which has one optimum, so the result depends on the data and l2 only (no epochs, lr or seed).
    Returns the final objective."""
    w = torch.ones(len(labels), device=labels.device) if weights is None else weights.detach().float()
    w = w / w.sum().clamp(min=1e-30)
    params = [p for p in model.parameters() if p.requires_grad]
    batch = data.batch(torch.arange(len(labels), device=labels.device))
    opt = torch.optim.LBFGS(
        params, lr=1.0, max_iter=max_iter, tolerance_grad=tol, tolerance_change=1e-12, line_search_fn="strong_wolfe"
    )

    def closure():
        opt.zero_grad()
        loss = (F.cross_entropy(model(*batch), labels, reduction="none") * w).sum()
        loss = loss + 0.5 * l2 * sum((p * p).sum() for p in params)
        loss.backward()
        return loss

    model.train()
    loss = opt.step(closure)
    return [float(loss.detach())]


def _backward(logits: torch.Tensor, labels: torch.Tensor, w: torch.Tensor, step_norm: float) -> torch.Tensor:
    loss = (F.cross_entropy(logits, labels, reduction="none") * w).sum()
    (loss / step_norm).backward()
    return loss.detach().double()


def _step_rows(n_local: int, steps: int, seed: int, epoch: int, rank: int, ids: torch.Tensor | None, device):
    """The local rows of each inner step of one epoch (see ``train``), as tensors on ``device``."""
    if ids is None:
        order = torch.randperm(n_local, generator=seeded_generator(seed, 1, epoch, rank)).to(device)
        return torch.tensor_split(order, steps)
    key = int(np.random.SeedSequence([seed & 0xFFFFFFFF, epoch, 7]).generate_state(1)[0])
    step_of = shr64(splitmix64(ids.to(device) ^ key), 1) % steps
    order = torch.argsort(step_of, stable=True)
    counts = torch.bincount(step_of, minlength=steps)
    return torch.split(order, counts.tolist())


@torch.inference_mode()
def predict_logits(model: nn.Module, data: Encoded, batch_size: int = 8192) -> torch.Tensor:
    model.eval()
    device = next(model.parameters()).device
    out = [model(*data.batch(rows)) for rows in torch.arange(len(data), device=device).split(batch_size)]
    model.train()
    return torch.cat(out) if out else torch.zeros(0, device=device)


def accuracy(model: nn.Module, data: Encoded, labels: torch.Tensor) -> float:
    return float((predict_logits(model, data).argmax(1) == labels).float().mean())
