"""Shard-local loading: a worker reads and encodes only its rows, and the LSTM vocabulary it builds
from a streamed pass equals the vocabulary of all texts held at once (so every worker agrees)."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from reweight_data import sentiment_texts

from sungen_ray.errors import SungenError
from sungen_ray.reweight import shard as shard_module
from sungen_ray.reweight.shard import load_shard, pool_ids_and_labels
from sungen_ray.tam import TamConfig
from sungen_ray.tam.lstm import build_vocab


@pytest.fixture
def pool(tmp_path, monkeypatch):
    monkeypatch.setattr(shard_module, "STREAM_ROWS", 64)  # several chunks per file
    texts, labels = sentiment_texts(400)
    idx = np.random.default_rng(0).permutation(4000)[:400]
    for part in range(2):  # two files, so row positions continue across files
        rows = slice(part * 200, (part + 1) * 200)
        table = pa.table({"idx": idx[rows], "text": texts[rows], "label": pa.array(labels[rows], pa.int32())})
        pq.write_table(table, tmp_path / f"part-{part}.parquet", row_group_size=50)
    return tmp_path, texts, idx


def test_workers_encode_only_their_rows_with_one_vocabulary(pool):
    path, texts, idx = pool
    tam = TamConfig(name="lstm", vocab_size=300, max_len=16)
    whole = load_shard(path, None, tam)
    parts = [load_shard(path, None, tam, rank, 3) for rank in range(3)]
    expected_vocab = build_vocab(texts, 300).get_vocab()
    assert whole.encoder.tokenizer.get_vocab() == expected_vocab
    position = {int(i): p for p, i in enumerate(whole.idx)}
    for rank, part in enumerate(parts):
        assert part.encoder.tokenizer.get_vocab() == expected_vocab
        assert bool((part.idx % 3 == rank).all()) and len(part.data) == len(part)
        rows = torch.tensor([position[int(i)] for i in part.idx])
        assert torch.equal(part.data.ids, whole.data.ids[rows])
        assert torch.equal(part.labels, whole.labels[rows])
    assert sorted(torch.cat([p.idx for p in parts]).tolist()) == sorted(idx.tolist())


def test_pool_validation_reads_no_text_but_names_bad_columns(tmp_path):
    pq.write_table(pa.table({"idx": [1, 1], "text": ["a", "b"], "label": [0, 1]}), tmp_path / "dup.parquet")
    with pytest.raises(SungenError, match="'idx' is not unique"):
        pool_ids_and_labels(tmp_path / "dup.parquet")
    pq.write_table(pa.table({"txt": ["a", "b"], "label": [0, 1]}), tmp_path / "notext.parquet")
    with pytest.raises(SungenError, match="column 'text' missing"):
        pool_ids_and_labels(tmp_path / "notext.parquet")
    pq.write_table(pa.table({"text": ["a", None], "label": [0, 1]}), tmp_path / "null.parquet")
    with pytest.raises(SungenError, match="null 'text'"):
        load_shard(tmp_path / "null.parquet", None, TamConfig())


def test_bow_shard_encoded_chunk_by_chunk_equals_whole(pool):
    path, _, _ = pool
    whole = load_shard(path, None, TamConfig(buckets=1 << 12))
    part = load_shard(path, None, TamConfig(buckets=1 << 12), 1, 2)
    position = {int(i): p for p, i in enumerate(whole.idx)}
    rows = torch.tensor([position[int(i)] for i in part.idx])
    for a, b in zip(part.data.batch(torch.arange(len(part))), whole.data.batch(rows)):
        assert torch.equal(a, b)
