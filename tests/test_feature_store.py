"""Frozen MiniLM features stored once beside a pool (issue 22): real MiniLM, real Parquet, real Ray.

A later round's pool view encodes only its new rows; a changed max_len invalidates the store; a
truncated or missing feature file is a clear error for a reader and a recompute for the filler;
reweighting workers, weight health and in-process training read stored vectors and encode none."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from reweight_data import sentiment_texts

from sungen_ray.data.labelled import parquet_inputs
from sungen_ray.errors import SungenError
from sungen_ray.features.embed import EmbedConfig
from sungen_ray.features.pool import (
    attach_pool_features,
    ensure_pool_features,
    read_pool_features,
    store_counts,
)
from sungen_ray.features.store import STORE_DIR
from sungen_ray.reweight.shard import load_shard
from sungen_ray.tam import TamConfig, minilm

LOCAL = EmbedConfig(mode="local")


def write_round(root, r: int, texts, labels, offset: int):
    data = root / "pool" / f"round-{r:02d}" / "data"
    data.mkdir(parents=True)
    n = len(texts)
    table = pa.table(
        {
            "idx": np.arange(offset, offset + n, dtype=np.int64),
            "text": texts,
            "label": pa.array(labels, pa.int32()),
        }
    )
    pq.write_table(table, data / f"r{r}-part-0.parquet")
    return data


def view(root, rounds: int):
    """Links to the data files of rounds 0..rounds-1, as the driver's pool view is."""
    v = root / f"view-{rounds}"
    v.mkdir(exist_ok=True)
    for r in range(rounds):
        for f in (root / "pool" / f"round-{r:02d}" / "data").glob("*.parquet"):
            if not (v / f.name).exists():
                (v / f.name).symlink_to(f)
    return v


@pytest.fixture
def rounds(tmp_path):
    texts, labels = sentiment_texts(60, seed=3)
    texts = [f"{t} #{i}" for i, t in enumerate(texts)]  # unique
    write_round(tmp_path, 0, texts[:36], labels[:36], 0)
    write_round(tmp_path, 1, texts[36:], labels[36:], 36)
    return tmp_path, texts, labels


def test_each_round_encodes_only_its_new_rows_and_stored_vectors_equal_encoding(rounds):
    root, texts, _ = rounds
    before = minilm.texts_encoded()
    first = ensure_pool_features(view(root, 1), LOCAL)
    assert first["texts_encoded"] == 36 and first["rows"] == 36
    second = ensure_pool_features(view(root, 2), LOCAL)
    assert second["texts_encoded"] == 24 and second["rows"] == 60  # round 0's rows were stored
    assert ensure_pool_features(view(root, 2), LOCAL)["texts_encoded"] == 0
    assert minilm.texts_encoded() - before == 60
    assert store_counts(root / "view-2") == {"rows": 60, "texts_encoded": 60}
    stored = read_pool_features(parquet_inputs(root / "view-2"), np.ones(60, bool))
    assert torch.allclose(stored, minilm.encode_texts(texts), atol=1e-5)
    # the store sits beside the data, hidden from every pool reader
    assert (root / "pool" / "round-00" / "data" / STORE_DIR / "manifest.json").is_file()
    assert len(parquet_inputs(root / "pool" / "round-00" / "data")) == 1


def test_changed_max_len_invalidates_the_store(rounds):
    root, texts, _ = rounds
    pool = view(root, 1)
    ensure_pool_features(pool, LOCAL)
    assert ensure_pool_features(pool, LOCAL, max_len=4)["texts_encoded"] == 36  # recomputed, not reused
    got = read_pool_features(parquet_inputs(pool), np.ones(36, bool), max_len=4)
    assert torch.allclose(got, minilm.encode_texts(texts[:36], max_len=4), atol=1e-5)
    with pytest.raises(SungenError, match="computed with"):  # a reader never takes the other key's vectors
        read_pool_features(parquet_inputs(pool), np.ones(36, bool))
    assert store_counts(pool, max_len=4)["texts_encoded"] == 72  # the counter keeps every encoding


def test_truncated_or_missing_feature_file_is_an_error_for_readers_and_recomputed_by_the_filler(rounds):
    root, _, _ = rounds
    pool = view(root, 1)
    ensure_pool_features(pool, LOCAL)
    stored = root / "pool" / "round-00" / "data" / STORE_DIR / "r0-part-0.parquet"
    good = read_pool_features(parquet_inputs(pool), np.ones(36, bool))
    stored.write_bytes(stored.read_bytes()[:-100])
    with pytest.raises(SungenError, match="truncated"):
        read_pool_features(parquet_inputs(pool), np.ones(36, bool))
    assert ensure_pool_features(pool, LOCAL)["texts_encoded"] == 36
    assert torch.equal(read_pool_features(parquet_inputs(pool), np.ones(36, bool)), good)
    stored.unlink()
    with pytest.raises(SungenError, match="missing"):
        read_pool_features(parquet_inputs(pool), np.ones(36, bool))
    assert ensure_pool_features(pool, LOCAL)["texts_encoded"] == 36


def test_a_pool_file_whose_texts_changed_is_encoded_again(rounds):
    root, texts, labels = rounds
    pool = view(root, 1)
    ensure_pool_features(pool, LOCAL)
    data = root / "pool" / "round-00" / "data" / "r0-part-0.parquet"
    table = pq.read_table(data)
    changed = texts[:35] + ["a completely different sentence"]
    pq.write_table(table.set_column(1, "text", pa.array(changed)), data)
    assert ensure_pool_features(pool, LOCAL)["texts_encoded"] == 36
    got = read_pool_features(parquet_inputs(pool), np.ones(36, bool))
    assert torch.allclose(got[-1], minilm.encode_texts(changed[-1:])[0], atol=1e-5)
    # a channel-scored rewrite (a new column, same ids and texts) keeps the stored features
    pq.write_table(pq.read_table(data).append_column("channel_margin", pa.array(np.zeros(36, np.float32))), data)
    assert ensure_pool_features(pool, LOCAL)["texts_encoded"] == 0


def test_workers_read_only_their_rows_and_encode_nothing(rounds):
    root, texts, _ = rounds
    pool = view(root, 2)
    tam = TamConfig(name="minilm")
    with pytest.raises(SungenError, match="no stored features|not found|manifest"):
        load_shard(pool, 2, tam, 0, 2)  # a worker never fills the store itself
    ensure_pool_features(pool, LOCAL)
    whole = minilm.encode_texts(texts)
    before = minilm.texts_encoded()
    for rank in range(2):
        shard = load_shard(pool, 2, tam, rank, 2)
        assert bool((shard.idx % 2 == rank).all()) and len(shard) == 30
        assert torch.allclose(shard.data.features, whole[shard.idx], atol=1e-5)
    assert minilm.texts_encoded() == before


def test_attached_features_train_in_process_without_encoding(rounds):
    from sungen_ray.curate.baselines import lr_confidence

    root, texts, labels = rounds
    pool = view(root, 2)
    attach_pool_features(pool, LOCAL)
    try:
        before = minilm.texts_encoded()
        conf = lr_confidence(texts, labels, ["negative", "positive"])
        assert minilm.texts_encoded() == before and conf.shape == (60,)
        assert minilm.MiniLMEncoder().encode(["not in the pool at all"]).features.shape == (1, 384)
        assert minilm.texts_encoded() == before + 1  # texts outside the pool are encoded (gold, ad hoc)
    finally:
        minilm.detach_features()


def test_ray_data_stage_stores_what_the_in_process_loop_computes(ray_local, rounds):
    root, texts, _ = rounds
    pool = view(root, 2)
    done = ensure_pool_features(pool, EmbedConfig(mode="ray", batch_size=16, actors=2))
    assert done == {**done, "texts_encoded": 60, "where": "ray", "rows": 60}
    got = read_pool_features(parquet_inputs(pool), np.ones(60, bool))
    assert torch.allclose(got, minilm.encode_texts(texts), atol=1e-5)
    assert store_counts(pool)["texts_encoded"] == 60
