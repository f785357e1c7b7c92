"""Classify new text with a trained task model: label name, label id and class probabilities per row.

The model comes through ``tam.final.load`` (the one public loader, whatever the on-disk format),
texts from a string or a JSONL/CSV/Parquet file with a ``text`` column. Texts are encoded and
classified in chunks of ``batch_size``, so memory stays flat however long the input is.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import torch

from sungen_ray.data import atomic
from sungen_ray.data.labelled import read_table
from sungen_ray.errors import SungenError
from sungen_ray.tam.device import resolve_device
from sungen_ray.tam.final import PREDICT_BATCH_ROWS

OUTPUT_SUFFIXES = (".jsonl", ".csv", ".parquet")


def read_texts(path: str | Path) -> list[str]:
    """The ``text`` column of a JSONL/CSV/Parquet file; other columns are ignored."""
    table = read_table(path)
    if "text" not in table.column_names:
        raise SungenError(f"{path}: column 'text' missing (columns: {table.column_names})")
    if table.num_rows == 0:
        raise SungenError(f"{path}: no rows to classify")
    texts = table.column("text").to_pylist()
    missing = [i for i, t in enumerate(texts) if t is None]
    if missing:
        raise SungenError(f"{path}: {len(missing)} row(s) have no text (first: row {missing[0]})")
    return [str(t) for t in texts]


def predict_proba(trained, texts: list[str], batch_size: int = PREDICT_BATCH_ROWS, device: str = "auto") -> np.ndarray:
    """Class probabilities, one row per text, computed ``batch_size`` texts at a time."""
    if batch_size < 1:
        raise SungenError(f"--batch-size: must be >= 1, got {batch_size}")
    dev = resolve_device(device, "--device")
    model = trained.model.to(dev).eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            encoded = trained.encoder.encode(texts[start : start + batch_size]).to(dev)
            logits = model(*encoded.batch(torch.arange(len(encoded), device=dev)))
            out.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, len(trained.label_names)), dtype=np.float32)


def predictions_table(texts: list[str], probs: np.ndarray, label_names: list[str]) -> pa.Table:
    """``text, label, label_name, prob_<label name>...`` (one probability column per class)."""
    pred = probs.argmax(1) if len(probs) else np.zeros(0, dtype=np.int64)
    columns = {
        "text": pa.array(texts, pa.string()),
        "label": pa.array(pred.astype(np.int32), pa.int32()),
        "label_name": pa.array([label_names[k] for k in pred], pa.string()),
    }
    for k, name in enumerate(label_names):
        columns[f"prob_{name}"] = pa.array(probs[:, k].astype(np.float32), pa.float32())
    return pa.table(columns)


def write_predictions(table: pa.Table, path: str | Path) -> Path:
    """Write atomically in the format the suffix names (a failed write leaves no partial file)."""
    check_output_path(path)
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        atomic.write_parquet(path, table)
        return path
    tmp = path.with_name(f".{path.name}.tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        pacsv.write_csv(table, tmp)
    else:
        with tmp.open("w") as fh:
            for row in table.to_pylist():
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)
    return path


def check_output_path(path: str | Path | None) -> None:
    """Fail before any work when the output could not be written in the format asked for."""
    if path is None:
        return
    suffix = Path(path).suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise SungenError(f"--out {path}: unsupported format {suffix or '(none)'}; use one of {list(OUTPUT_SUFFIXES)}")
