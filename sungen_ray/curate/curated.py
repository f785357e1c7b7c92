"""Joining a pool with its learned weights and picking the training set: shared by ``sungen-ray
train`` and the driver, so both select exactly the same rows from the same files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from sungen_ray.data.labelled import LabelledData, read_table
from sungen_ray.errors import SungenError
from sungen_ray.selection import SelectConfig, label_shares, select


@dataclass
class Curated:
    data: LabelledData  # the kept rows
    weights: np.ndarray | None  # their weights when training weighted, else None
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


def read_weights(path: str | Path, idx: np.ndarray) -> np.ndarray:
    """Weights aligned to ``idx``; every pool row must have one."""
    path = Path(path)
    file = path / "weights.parquet" if path.is_dir() else path
    if not file.is_file():
        raise SungenError(f"weights not found: {file}")
    table = pq.read_table(file, columns=["idx", "weight"])
    w_idx = table.column("idx").to_numpy()
    w = table.column("weight").to_numpy().astype(np.float64)
    order = np.argsort(w_idx)
    pos = np.searchsorted(w_idx[order], idx)
    pos = np.clip(pos, 0, len(order) - 1)
    found = w_idx[order][pos] == idx
    if not found.all():
        raise SungenError(f"{file}: no weight for {int((~found).sum())} pool rows (e.g. idx {int(idx[~found][0])})")
    return w[order][pos]


def curate(data: LabelledData, weights: np.ndarray, cfg: SelectConfig, num_labels: int) -> Curated:
    keep = select(weights, data.label, cfg)
    rows = np.flatnonzero(keep)
    return Curated(
        data=data.subset(rows),
        weights=weights[rows] if cfg.weighted else None,
        shares=label_shares(data.label, keep, num_labels),
    )
