"""Load a labelled pool, keep this worker's rows and encode them for the TAM.

Rows go to workers by ``idx % world_size``, so a restarted worker gets the same rows back.
Every worker reads the whole text column (cheap next to training) so that the LSTM vocabulary,
fitted on all texts with a deterministic trainer, is identical on every worker.
"""

from __future__ import annotations

import numpy as np
import torch

from sungen_ray.data.labelled import LabelledData
from sungen_ray.errors import SungenError
from sungen_ray.reweight.loop import Shard
from sungen_ray.tam.registry import TamConfig, build_encoder


def make_shard(data: LabelledData, num_labels: int, tam: TamConfig, rank: int = 0, world_size: int = 1) -> Shard:
    if world_size > len(data):
        raise SungenError(f"{world_size} workers for {len(data)} samples: use at most {len(data)} workers")
    rows = np.flatnonzero(data.idx % world_size == rank)
    encoder = build_encoder(tam, data.text)
    local = data.subset(rows)
    return Shard(
        idx=torch.from_numpy(local.idx),
        labels=torch.from_numpy(local.label),
        data=encoder.encode(local.text),
        num_labels=num_labels,
        encoder=encoder,
    )
