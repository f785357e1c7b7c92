"""Picking the training set from a pool and its learned weights: one function (``curate``) for
``sungen-ray train`` and the driver's select stage, so both keep exactly the same rows."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sungen_ray.curate.selection import SelectConfig, label_shares, select, training_weights
from sungen_ray.data.labelled import LabelledData, read_table


@dataclass
class Curated:
    data: LabelledData  # the kept rows
    keep: np.ndarray  # boolean mask over the pool's rows
    weights: np.ndarray | None  # their training weights (scaled per label) when training weighted, else None
    shares: dict  # label -> pool/kept/share


def label_names_of(pool_path, num_labels: int) -> list[str]:
    """Label names from the pool's ``label_name`` column (falls back to "0", "1", ...)."""
    table = read_table(pool_path)
    names = [str(k) for k in range(num_labels)]
    if "label_name" in table.column_names:
        for lab, name in zip(table.column("label").to_pylist(), table.column("label_name").to_pylist()):
            if name is not None and 0 <= lab < num_labels:
                names[lab] = name
    return names


def curate(data: LabelledData, weights: np.ndarray, cfg: SelectConfig, num_labels: int) -> Curated:
    keep = select(weights, data.label, cfg)
    rows = np.flatnonzero(keep)
    return Curated(
        data=data.subset(rows),
        keep=keep,
        weights=training_weights(weights, data.label, keep) if cfg.weighted else None,
        shares=label_shares(data.label, keep, num_labels),
    )
