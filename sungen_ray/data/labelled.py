"""Reading labelled text from a synthetic pool (Parquet) or a gold file (JSONL/CSV/Parquet).

Reweighting, training and evaluation all read the same shape of data, so the checks that
turn a bad file into a clear error (empty, corrupt, missing column, null text, label out of
range) live here once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from sungen_ray.errors import SungenError

# Column order and types of the synthetic pool (see docs/DESIGN.md, "Data contracts").
POOL_SCHEMA = pa.schema(
    [
        ("idx", pa.int64()),
        ("text", pa.string()),
        ("label", pa.int32()),
        ("label_name", pa.string()),
        ("task", pa.string()),
        ("round", pa.int16()),
        ("model", pa.string()),
        ("logprob", pa.float32()),
    ]
)


@dataclass
class LabelledData:
    """Texts with integer labels and a stable per-row id (``idx``)."""

    idx: np.ndarray  # int64, unique
    text: list[str]
    label: np.ndarray  # int64
    source: str

    def __len__(self) -> int:
        return len(self.text)

    def subset(self, rows: np.ndarray) -> LabelledData:
        rows = np.asarray(rows)
        return LabelledData(
            idx=self.idx[rows],
            text=[self.text[i] for i in rows],
            label=self.label[rows],
            source=self.source,
        )


def parquet_files(path: Path) -> list[Path]:
    if path.is_dir():
        # Dot-prefixed files and folders are staging/temporary output, never data.
        files = sorted(
            p for p in path.rglob("*.parquet") if not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
        if not files:
            raise SungenError(f"{path}: directory holds no .parquet files")
        return files
    return [path]


def parquet_inputs(path) -> list[Path] | None:
    """The Parquet files of ``path`` in reading order, or None for a JSONL/CSV file or a list of
    files (read whole: small by nature)."""
    if isinstance(path, (list, tuple)):
        return None
    p = Path(path)
    if not p.exists():
        raise SungenError(f"data not found: {p}")
    return parquet_files(p) if p.is_dir() or p.suffix.lower() == ".parquet" else None


def read_parquet(file: Path, columns: list[str] | None = None) -> pa.Table:
    """One Parquet file, with a failure naming that file (a truncated one in a pool dir of many)."""
    try:
        return pq.read_table(file, columns=columns)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise SungenError(f"{file}: not a readable Parquet file (truncated or corrupt?): {exc}") from exc


def read_table(path: str | Path | list) -> pa.Table:
    """Load a Parquet file/dir, JSON Lines or CSV file (or a list of them) into an Arrow table."""
    if isinstance(path, (list, tuple)):
        if not path:
            raise SungenError("no data paths given")
        tables = [read_table(p) for p in path]
        return pa.concat_tables(tables, promote_options="default") if len(tables) > 1 else tables[0]
    path = Path(path)
    if not path.exists():
        raise SungenError(f"data not found: {path}")
    suffix = path.suffix.lower()
    try:
        if path.is_dir() or suffix == ".parquet":
            tables = [read_parquet(p) for p in parquet_files(path)]
            return pa.concat_tables(tables, promote_options="default") if len(tables) > 1 else tables[0]
        if suffix in (".jsonl", ".json"):
            return _read_jsonl(path)
        if suffix == ".csv":
            return pacsv.read_csv(path)
    except SungenError:
        raise
    except (pa.ArrowInvalid, pa.ArrowException, OSError, ValueError) as exc:
        raise SungenError(f"{path}: cannot be read as {suffix or 'parquet'}: {exc}") from exc
    raise SungenError(f"{path}: unsupported file type {suffix!r} (use .parquet, .jsonl or .csv)")


def _read_jsonl(path: Path) -> pa.Table:
    rows = []
    with path.open() as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise SungenError(f"{path}:{lineno}: not valid JSON: {exc}") from exc
    if not rows:
        return pa.table({"text": pa.array([], pa.string()), "label": pa.array([], pa.int64())})
    return pa.Table.from_pylist(rows)


def read_labelled(
    path: str | Path | list,
    num_labels: int | None = None,
    text_column: str = "text",
    label_column: str = "label",
    min_labels: int = 1,
) -> LabelledData:
    """Read and validate labelled text. ``idx`` is taken from the file when present, else row order."""
    table = read_table(path)
    where = ", ".join(map(str, path)) if isinstance(path, (list, tuple)) else str(path)
    idx, labels = checked_ids_and_labels(table, where, num_labels, text_column, label_column, min_labels)
    text_col = table.column(text_column)
    if text_col.null_count:
        raise SungenError(f"{where}: {text_col.null_count} row(s) have a null {text_column!r}")
    text = [str(t) for t in text_col.to_pylist()]
    return LabelledData(idx=idx, text=text, label=labels, source=where)


def checked_ids_and_labels(
    table: pa.Table,
    where: str,
    num_labels: int | None = None,
    text_column: str = "text",
    label_column: str = "label",
    min_labels: int = 1,
    columns: list[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(idx, labels) of ``table`` after the checks every reader makes. ``table`` needs the label
    column and, if the data has one, ``idx``; the text column is only looked for among ``columns``
    (the data's column names, default the table's), so a reader can leave the texts unread."""
    columns = table.column_names if columns is None else columns
    if table.num_rows == 0:
        raise SungenError(f"{where}: no rows")
    for col in (text_column, label_column):
        if col not in columns:
            raise SungenError(f"{where}: column {col!r} missing (columns: {columns})")
    raw_labels = table.column(label_column)
    if raw_labels.null_count:
        raise SungenError(f"{where}: {raw_labels.null_count} row(s) have a null {label_column!r}")
    labels = np.asarray(raw_labels.to_numpy(zero_copy_only=False))
    if labels.dtype.kind == "f":
        if not np.all(np.isfinite(labels)):
            raise SungenError(f"{where}: column {label_column!r} holds NaN/inf")
        if not np.all(labels == np.round(labels)):
            raise SungenError(f"{where}: column {label_column!r} holds non-integer values")
    elif labels.dtype.kind not in "iu":
        raise SungenError(f"{where}: column {label_column!r} must be integer class ids, got {labels.dtype}")
    labels = labels.astype(np.int64)
    if labels.min() < 0:
        raise SungenError(f"{where}: label {int(labels.min())} is negative")
    if num_labels is not None and labels.max() >= num_labels:
        raise SungenError(
            f"{where}: label {int(labels.max())} out of range for a task with {num_labels} labels (0..{num_labels - 1})"
        )
    n_distinct = len(np.unique(labels))
    if n_distinct < min_labels:
        raise SungenError(f"{where}: needs at least {min_labels} distinct labels, found {n_distinct}")
    if "idx" in table.column_names:
        idx = np.asarray(table.column("idx").to_numpy(zero_copy_only=False)).astype(np.int64)
        if len(np.unique(idx)) != len(idx):
            raise SungenError(f"{where}: column 'idx' is not unique")
    else:
        idx = np.arange(table.num_rows, dtype=np.int64)
    return idx, labels


def load_data(path, num_labels: int | None = None) -> tuple[LabelledData, int]:
    """A pool with at least two labels, and its number of labels (given, or from the data)."""
    data = read_labelled(path, num_labels=num_labels, min_labels=2)
    return data, num_labels or int(data.label.max()) + 1
