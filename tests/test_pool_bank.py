"""The committed pool bank: every pool its manifest lists is there, whole, in the pool schema, and
neither the files nor the manifest name a local path."""

import hashlib
import json
from pathlib import Path

import pyarrow.parquet as pq

from sungen_ray.tasks.spec import load_task

BANK = Path(__file__).resolve().parents[1] / "benchmarks" / "pools"


def test_bank_matches_its_manifest():
    manifest = json.loads((BANK / "manifest.json").read_text())
    small = {"demo-sst2-1000", *(f"demo-sst2-1000-s{s}" for s in range(1, 6))}
    assert small | {"sst2-20000", "agnews-10000", "imdb-6000", "dbpedia-7000"} <= set(manifest)  # issue 21's bank
    total = 0
    for name, entry in manifest.items():
        path = BANK / name / "pool.parquet"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"], name
        table = pq.read_table(path)
        spec = load_task(entry["task"])
        assert table.num_rows == entry["rows"] and table.column_names == entry["columns"]
        labels = table.column("label").to_numpy()
        assert labels.min() >= 0 and labels.max() < spec.num_labels
        assert len(set(table.column("idx").to_pylist())) == table.num_rows
        assert entry["channel_margin"] == ("channel_margin" in table.column_names)
        assert "model" not in table.column_names  # the generator is named once, in the manifest
        total += path.stat().st_size
    text = (BANK / "manifest.json").read_text()
    assert "/work" not in text and "/root" not in text and "/home" not in text
    assert total < 25 * 1024 * 1024
