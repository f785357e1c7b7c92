"""The curated set as a dataset other tools load and people can share: Parquet plus a dataset card.

The layout is the one the Hugging Face hub uses (``data/train-00000-of-00001.parquet`` and a
``README.md`` whose YAML front matter declares the features), so ``datasets.load_dataset(DIR)``
reads it with the labels as a ``ClassLabel`` and ``huggingface-cli upload`` shares it unchanged.
The same features also ride in the Parquet schema (the ``huggingface`` metadata key), so the file
alone keeps its label names when someone copies just the data. This module writes both without
importing ``datasets``: the library does not depend on it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import yaml

from sungen_ray.data import atomic
from sungen_ray.errors import SungenError

DATA_FILE = "data/train-00000-of-00001.parquet"
CARD_FILE = "README.md"
EMBEDDED_LICENSE = "apache-2.0"  # SmolLM2's licence: text it generates may be shared under it

# what each column means, for the card; a column not listed here is not exported
COLUMNS = {
    "idx": "the sample's id in its pool (stable across rounds and files)",
    "text": "the generated text",
    "label": "the label the text was generated for (a ClassLabel: see the label names above)",
    "weight": "the learned SunGen weight, in [0, 1]: higher means more likely clean",
    "round": "the generation round that made the sample",
    "logprob": "the generator's mean token log-probability of the text under its own label's prompt",
    "channel_margin": "log P(text | own label's prompt) minus the best other label's (the channel score)",
}
_ARROW_DTYPES = {
    pa.string(): "string",
    pa.large_string(): "large_string",
    pa.int64(): "int64",
    pa.int32(): "int32",
    pa.float64(): "float64",
    pa.float32(): "float32",
    pa.bool_(): "bool",
}


def _feature(name: str, arrow_type: pa.DataType, label_names: list[str]) -> dict:
    if name == "label":
        return {"name": name, "dtype": {"class_label": {"names": {str(k): n for k, n in enumerate(label_names)}}}}
    if arrow_type not in _ARROW_DTYPES:
        raise SungenError(f"dataset column {name!r}: type {arrow_type} has no dataset feature type")
    return {"name": name, "dtype": _ARROW_DTYPES[arrow_type]}


def _hf_schema_features(features: list[dict]) -> dict:
    """The same features in the form ``datasets`` stores in a Parquet schema's metadata."""
    out = {}
    for f in features:
        if isinstance(f["dtype"], dict):
            names = list(f["dtype"]["class_label"]["names"].values())
            out[f["name"]] = {"names": names, "_type": "ClassLabel"}
        else:
            out[f["name"]] = {"dtype": f["dtype"], "_type": "Value"}
    return out


def export_table(table: pa.Table, label_names: list[str]) -> pa.Table:
    """The columns the card describes, in its order; labels checked against the names."""
    missing = [c for c in ("text", "label") if c not in table.column_names]
    if missing:
        raise SungenError(f"cannot export a dataset without column(s) {missing}")
    labels = table.column("label").to_numpy(zero_copy_only=False)
    bad = [int(x) for x in labels if not 0 <= int(x) < len(label_names)]
    if bad:
        raise SungenError(f"dataset label {bad[0]} out of range for labels {label_names}")
    return table.select([c for c in COLUMNS if c in table.column_names])


def card_text(label_names: list[str], features: list[dict], provenance: dict, license_id: str, num_bytes: int) -> str:
    """The dataset card: YAML front matter for tools, then prose for people."""
    rows = provenance["rows"]
    split = {"name": "train", "num_bytes": num_bytes, "num_examples": rows}
    front = {
        "license": license_id,
        "task_categories": ["text-classification"],
        "tags": ["synthetic", "sungen-ray"],
        "pretty_name": f"{provenance['task']} (synthetic, sungen-ray)",
        "size_categories": [_size_category(rows)],
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*.parquet"}]}],
        "dataset_info": {"features": features, "splits": [split], "dataset_size": num_bytes},
        "sungen_ray": provenance,
    }
    per_label = provenance.get("per_label") or {}
    lines = [
        "---",
        yaml.safe_dump(front, sort_keys=False, allow_unicode=True).rstrip(),
        "---",
        f"# {front['pretty_name']}",
        "",
        f"Synthetic training data for the `{provenance['task']}` text-classification task, written by a "
        "language model with no human labels and cleaned by sungen-ray.",
        "",
        "## Labels",
        "",
        *[f"- `{k}`: {name} ({per_label.get(name, '?')} rows)" for k, name in enumerate(label_names)],
        "",
        "## Sizes",
        "",
        f"{rows} rows kept of a pool of {provenance.get('pool_rows', '?')}.",
        "",
        "## Generator",
        "",
        *[f"- `{g}`" for g in provenance.get("generator") or ["unknown"]],
        "",
        "The id names the model by what it is (package and version, or hub id) and the sha256 of its weights.",
        "",
        "## Method",
        "",
        f"{provenance['method']}. Settings:",
        "",
        "```json",
        json.dumps(provenance.get("settings", {}), indent=2, sort_keys=True),
        "```",
        "",
        "## Columns",
        "",
        *[f"- `{f['name']}`: {COLUMNS[f['name']]}" for f in features],
        "",
        "## Licence",
        "",
        f"`{license_id}`"
        + (
            ": the text was generated by a model under this licence."
            if license_id == EMBEDDED_LICENSE
            else ". Check the generator's licence before sharing."
        ),
        "",
        "## Loading",
        "",
        "```python",
        "from datasets import load_dataset",
        'ds = load_dataset("path/to/this/directory")["train"]',
        "```",
        "",
    ]
    return "\n".join(lines)


def _size_category(rows: int) -> str:
    for bound, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if rows < bound:
            return name
    return "1M<n<10M" if rows < 10_000_000 else "n>10M"


def default_license(generators: list[str] | None) -> str:
    from sungen_ray.plm.prepare import WHEEL_SPEC

    if generators and all(g.startswith(WHEEL_SPEC + ":") for g in generators):
        return EMBEDDED_LICENSE
    return "unknown"


def write_dataset(
    out: str | Path, table: pa.Table, label_names: list[str], provenance: dict, license_id: str | None = None
) -> Path:
    """Write ``out`` (replaced whole, so a reader never sees half a dataset) and return it.

    ``provenance`` must hold task, method and settings; rows, per-label counts and the licence are
    filled in here. It must name the generator by identity (``plm.identity``), never by path."""
    out = Path(out)
    table = export_table(table, label_names)
    counts = pc.value_counts(table.column("label")).to_pylist()
    per_label = {label_names[c["values"]]: c["counts"] for c in sorted(counts, key=lambda c: c["values"])}
    provenance = {**provenance, "rows": table.num_rows, "per_label": per_label, "label_names": list(label_names)}
    license_id = license_id or default_license(provenance.get("generator"))
    features = [_feature(f.name, f.type, label_names) for f in table.schema]
    hf_meta = {"info": {"features": _hf_schema_features(features)}}
    table = table.replace_schema_metadata({b"huggingface": json.dumps(hf_meta).encode()})

    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "data").mkdir(parents=True)
    atomic.write_parquet(tmp / DATA_FILE, table)
    (tmp / CARD_FILE).write_text(card_text(label_names, features, provenance, license_id, table.nbytes))
    atomic.replace_dir(tmp, out)
    return out
