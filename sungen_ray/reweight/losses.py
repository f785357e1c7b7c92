"""Per-sample losses of the bilevel problem and the top-tau restriction of the outer set.

Inner: weighted cross-entropy (in ``tam.train``). Outer: a noise-robust loss on the synthetic
validation samples whose weight is in the top tau fraction. RCE and MAE are bounded, so a
flipped label costs at most a constant and cannot dominate the outer gradient; plain CE is
the non-robust ablation.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from sungen_ray.parallel.collectives import Collectives


def rce(logits: torch.Tensor, labels: torch.Tensor, smoothing: float = 10.0) -> torch.Tensor:
    """Reverse CE, -sum_k p_k log q_k with q = softmax(A * onehot(y)).

    log q_k is A - c for k = y and -c otherwise, c = log(e^A + K - 1), so the loss is
    c - A * p_y: bounded in [c - A, c], zero gradient outside p_y.
    """
    num_classes = logits.shape[1]
    p_y = logits.softmax(1).gather(1, labels[:, None]).squeeze(1)
    c = smoothing + math.log1p((num_classes - 1) * math.exp(-smoothing))
    return c - smoothing * p_y


def mae(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean absolute error of the probability vector against the one-hot target, halved: 1 - p_y."""
    return 1.0 - logits.softmax(1).gather(1, labels[:, None]).squeeze(1)


def ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, labels, reduction="none")


def outer_loss_fn(name: str, smoothing: float = 10.0):
    if name == "rce":
        return lambda logits, labels: rce(logits, labels, smoothing)
    return {"mae": mae, "ce": ce}[name]


# Theta histogram for the global top-tau threshold: two passes of BINS bins, the second inside
# the bin the first one picked, so the threshold is exact to (2 * RANGE) / BINS**2 ~ 4e-6
# while only C x BINS counts cross the network.
THETA_RANGE = 32.0
BINS = 4096


def _bin_of(x: torch.Tensor, lo: torch.Tensor, width: torch.Tensor) -> torch.Tensor:
    return ((x - lo) / width).floor().clamp(0, BINS - 1).long()


def top_tau_threshold(
    theta: torch.Tensor, tau: float, coll: Collectives, groups: torch.Tensor | None = None, num_groups: int = 1
) -> torch.Tensor:
    """Per-group threshold t such that the fraction of all theta (over all workers) >= t is about tau.

    No worker sees another's theta: each builds a histogram of its shard, the histograms are
    summed, and every worker picks the same bin. Ties (e.g. all theta 0 at the start) keep all.
    ``groups`` (e.g. labels) gives one threshold per group; None means one global threshold.
    """
    dev = theta.device
    theta = theta.detach().double().clamp(-THETA_RANGE, THETA_RANGE)
    groups = torch.zeros(len(theta), dtype=torch.long, device=dev) if groups is None else groups.long()
    lo = torch.full((num_groups,), -THETA_RANGE, dtype=torch.float64, device=dev)
    width = torch.full((num_groups,), 2 * THETA_RANGE / BINS, dtype=torch.float64, device=dev)
    active = torch.ones(len(theta), dtype=torch.bool, device=dev)  # samples inside the chosen coarse bin
    above = torch.zeros(num_groups, dtype=torch.float64, device=dev)  # counted in bins above the chosen one
    need = None
    for _ in range(2):
        bins = _bin_of(theta, lo[groups], width[groups])
        hist = torch.zeros(num_groups * BINS, dtype=torch.float64, device=dev)
        hist.index_add_(0, (groups * BINS + bins)[active], active[active].double())
        hist = coll.all_reduce_sum(hist).view(num_groups, BINS)
        if need is None:
            need = torch.ceil(tau * hist.sum(1))  # how many to keep per group
        from_top = hist.flip(1).cumsum(1).flip(1) + above[:, None]  # count >= each bin's lower edge
        # the highest bin whose lower edge still keeps at least `need`
        chosen = ((from_top >= need[:, None]).double() * torch.arange(BINS, dtype=torch.float64, device=dev)).argmax(1)
        above = above + (from_top.gather(1, chosen[:, None]).squeeze(1) - hist.gather(1, chosen[:, None]).squeeze(1))
        lo = lo + chosen * width
        active = active & (bins == chosen[groups])
        width = width / BINS
    return lo.float()
