"""The only channel between workers: a sum all-reduce, plus rank and world size.

The reweighting core routes every sum over samples (S = sum of weights, model gradients,
the outer gradient g, losses, counts, weight histograms) through this object. In one
process it is the identity; inside Ray Train it is torch.distributed. So the distributed
run executes exactly the single-process algorithm on a sharded dataset.
"""

from __future__ import annotations

from typing import Protocol

import torch


class Collectives(Protocol):
    rank: int
    world_size: int

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over workers in place and return it."""
        ...

    def all_to_all(self, tensor: torch.Tensor, send_counts: list[int], recv_counts: list[int]) -> torch.Tensor:
        """Send rows ``tensor[sum(send_counts[:q]) : ...]`` to worker q; returns the rows received,
        concatenated in rank order (``recv_counts[q]`` of them from worker q)."""
        ...


class LocalCollectives:
    rank = 0
    world_size = 1

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    def all_to_all(self, tensor: torch.Tensor, send_counts: list[int], recv_counts: list[int]) -> torch.Tensor:
        return tensor


class TorchDistCollectives:
    """torch.distributed (gloo on CPU, nccl on GPU) over an initialised default process group."""

    def __init__(self, group=None):
        import torch.distributed as dist

        self._dist = dist
        self.group = group
        self.rank = dist.get_rank(group)
        self.world_size = dist.get_world_size(group)

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        self._dist.all_reduce(tensor, op=self._dist.ReduceOp.SUM, group=self.group)
        return tensor

    def all_to_all(self, tensor: torch.Tensor, send_counts: list[int], recv_counts: list[int]) -> torch.Tensor:
        out = tensor.new_empty((sum(recv_counts), *tensor.shape[1:]))
        self._dist.all_to_all_single(out, tensor.contiguous(), recv_counts, send_counts, group=self.group)
        return out


def all_reduce_scalar(coll: Collectives, value: float, dtype=torch.float64) -> float:
    return float(coll.all_reduce_sum(torch.tensor(value, dtype=dtype)))


def all_reduce_grads(coll: Collectives, tensors: list[torch.Tensor]) -> None:
    """Sum a list of tensors over workers with one flat all-reduce (one message per step)."""
    if coll.world_size == 1 or not tensors:
        return
    flat = coll.all_reduce_sum(torch.cat([t.reshape(-1) for t in tensors]))
    for t, chunk in zip(tensors, flat.split([t.numel() for t in tensors])):
        t.copy_(chunk.view_as(t))


def group_sums(coll: Collectives, columns: torch.Tensor, groups: torch.Tensor, num_groups: int) -> torch.Tensor:
    """(num_groups, c) float64 sums of each of ``columns``' c columns over the rows of each group,
    over every worker's rows: one all-reduce for every per-label (or whole-pool) statistic a step needs."""
    columns = columns.double()
    if columns.dim() == 1:  # one column; not reshape(n, -1), which a worker with no rows cannot take
        columns = columns.unsqueeze(1)
    sums = torch.zeros(num_groups, columns.shape[1], dtype=torch.float64, device=columns.device)
    return coll.all_reduce_sum(sums.index_add_(0, groups, columns))
