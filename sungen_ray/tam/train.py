"""Training and prediction for every TAM, data-parallel through a collectives object.

The same ``train`` is the inner problem of reweighting (weighted, from a fixed phi_0) and
the final TAM fit on the curated set (uniform or weighted), so the two cannot drift apart.
With several workers each trains on its own shard: every step the per-worker gradients are
summed through the collectives (the DDP all-reduce, done by hand so the math is visible).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from sungen_ray.reweight.collectives import Collectives, LocalCollectives, all_reduce_grads
from sungen_ray.tam.encoded import Encoded
from sungen_ray.tam.registry import TamConfig


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
) -> list[float]:
    """Minimise sum_i w_i CE_i / sum_i w_i over all shards; returns the weighted mean loss per epoch.

    Every worker takes the same number of steps (set by the global sample count), so global
    batches are about ``batch_size`` whatever the number of workers. With ``ids`` (stable global
    sample ids) a sample's step in an epoch is a hash of (id, seed, epoch): the global batch of
    every step is then the same set of samples for any number of workers, so W workers compute
    what one process computes (up to the order of float additions). Without ids each worker
    shuffles its own shard. The loss per step is normalised by the global mean weight, which
    makes a step the usual mean-loss step when all weights are 1.
    """
    coll = coll or LocalCollectives()
    n_local = len(data)
    w = torch.ones(n_local) if weights is None else weights.detach().float()
    totals = coll.all_reduce_sum(torch.tensor([float(n_local), float(w.sum())], dtype=torch.float64))
    n_global, s_global = float(totals[0]), float(totals[1])
    if n_global == 0 or s_global <= 0:
        return [float("nan")] * epochs
    batch_size = cfg.train_setting("batch_size")
    steps = max(1, math.ceil(n_global / batch_size))
    step_norm = (s_global / n_global) * (n_global / steps)  # mean weight x global batch size
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(cfg.train_setting("optimizer"), params, lr or cfg.train_setting("lr"))
    for p in params:  # a worker whose share of a step is empty still all-reduces (zero) gradients
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    model.train()
    losses = []
    for epoch in range(epochs):
        epoch_sum = torch.zeros((), dtype=torch.float64)
        for rows in _step_rows(n_local, steps, seed, epoch, coll.rank, ids):
            opt.zero_grad(set_to_none=False)
            if len(rows):
                ce = F.cross_entropy(model(*data.batch(rows)), labels[rows], reduction="none")
                loss = (ce * w[rows]).sum()
                (loss / step_norm).backward()
                epoch_sum += float(loss.detach())
            all_reduce_grads(coll, [p.grad for p in params])
            opt.step()
        losses.append(float(coll.all_reduce_sum(epoch_sum)) / s_global)
    return losses


def _step_rows(n_local: int, steps: int, seed: int, epoch: int, rank: int, ids: torch.Tensor | None):
    """The local rows of each inner step of one epoch (see ``train``)."""
    if ids is None:
        order = torch.randperm(n_local, generator=seeded_generator(seed, 1, epoch, rank))
        return torch.tensor_split(order, steps)
    key = np.uint64(int(np.random.SeedSequence([seed & 0xFFFFFFFF, epoch, 7]).generate_state(1)[0]))
    with np.errstate(over="ignore"):
        x = ids.numpy().astype(np.uint64) ^ key
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    step_of = torch.from_numpy((x % np.uint64(steps)).astype(np.int64))
    order = torch.argsort(step_of, stable=True)
    counts = torch.bincount(step_of, minlength=steps)
    return torch.split(order, counts.tolist())


@torch.inference_mode()
def predict_logits(model: nn.Module, data: Encoded, batch_size: int = 8192) -> torch.Tensor:
    model.eval()
    out = [model(*data.batch(rows)) for rows in torch.arange(len(data)).split(batch_size)]
    model.train()
    return torch.cat(out) if out else torch.zeros(0)


def accuracy(model: nn.Module, data: Encoded, labels: torch.Tensor) -> float:
    return float((predict_logits(model, data).argmax(1) == labels).float().mean())
