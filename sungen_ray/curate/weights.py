"""Reading a reweighting run's weights back, aligned to a pool's rows, and what they rank first and last."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from sungen_ray.errors import SungenError


def read_weights(path: str | Path, idx: np.ndarray, column: str = "weight") -> np.ndarray:
    """Weights (or ``column``, e.g. theta) aligned to ``idx``; every pool row must have one."""
    path = Path(path)
    file = path / "weights.parquet" if path.is_dir() else path
    if not file.is_file():
        raise SungenError(f"weights not found: {file}")
    table = pq.read_table(file, columns=["idx", column])
    w_idx = table.column("idx").to_numpy()
    w = table.column(column).to_numpy().astype(np.float64)
    order = np.argsort(w_idx)
    pos = np.searchsorted(w_idx[order], idx)
    pos = np.clip(pos, 0, len(order) - 1)
    found = w_idx[order][pos] == idx
    if not found.all():
        raise SungenError(f"{file}: no weight for {int((~found).sum())} pool rows (e.g. idx {int(idx[~found][0])})")
    return w[order][pos]


def ranked_by_label(
    texts: list[str], labels: np.ndarray, weights: np.ndarray, label_names: list[str], n: int
) -> dict[str, dict[str, list[tuple[float, str]]]]:
    """Each label's ``n`` highest- and lowest-weighted (weight, text) pairs: what the weights put
    first and last within a label shows why a run helped or did not (the run report,
    ``quality_synthetic.py --examples``)."""
    ranked = {}
    for label, name in enumerate(label_names):
        rows = np.flatnonzero(labels == label)
        order = rows[np.argsort(weights[rows], kind="stable")]
        ranked[name] = {
            "highest": [(float(weights[i]), texts[i]) for i in order[::-1][:n]],
            "lowest": [(float(weights[i]), texts[i]) for i in order[:n]],
        }
    return ranked
