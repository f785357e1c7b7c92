import json

import pyarrow.parquet as pq
import pytest
from reweight_data import flip, sentiment_texts

from sungen_ray.cli import main


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_cli_writes_weights_and_metrics(tmp_path, capsys):
    texts, labels = sentiment_texts(300)
    noisy, _ = flip(labels, 0.2)
    data = _write(tmp_path / "pool.jsonl", [{"text": t, "label": int(y)} for t, y in zip(texts, noisy)])
    out = tmp_path / "out"
    cfg = tmp_path / "small.yaml"
    cfg.write_text("tam:\n  buckets: 4096\n  batch_size: 32\n")  # a small table keeps the test fast
    args = ["reweight", "--data", data, "--out", str(out), "--outer-iters", "3", "--no-early-stop", "--hypergrad", "fd"]
    args += ["--config", str(cfg)]
    assert main(args) == 0
    table = pq.read_table(out / "weights.parquet")
    assert table.column_names == ["idx", "theta", "weight"] and table.num_rows == 300
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["iterations_run"] == 3 and metrics["iterations"][0]["hypergrad"] == "fd"
    written = (out / "weights.parquet").stat().st_mtime_ns
    capsys.readouterr()
    assert main(args) == 0  # a re-run of a finished run keeps its outputs: no encoding, nothing rewritten
    assert "already finished, kept" in capsys.readouterr().out
    assert (out / "weights.parquet").stat().st_mtime_ns == written
    assert pq.read_table(out / "weights.parquet").equals(table)


@pytest.mark.parametrize(
    "rows, extra, message",
    [
        ([], [], "no rows"),
        ([{"text": "a", "label": 0}, {"text": "b", "label": 0}], [], "at least 2 distinct labels"),
        ([{"text": "a", "label": 0}, {"text": "b", "label": 5}], ["--num-labels", "2"], "out of range"),
        ([{"txt": "a", "label": 0}, {"txt": "b", "label": 1}], [], "column 'text' missing"),
        ([{"text": "a", "label": 0}, {"text": "b", "label": float("nan")}], [], "NaN"),
    ],
)
def test_cli_bad_input_is_a_clear_error(tmp_path, capsys, rows, extra, message):
    data = tmp_path / "bad.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["reweight", "--data", str(data), "--out", str(tmp_path / "o"), *extra]) == 2
    assert message in capsys.readouterr().err


def test_cli_bad_config_value(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("tau: 2.0\n")
    data = _write(tmp_path / "d.jsonl", [{"text": "a b", "label": 0}, {"text": "c d", "label": 1}])
    assert main(["reweight", "--data", data, "--out", str(tmp_path / "o"), "--config", str(cfg)]) == 2
    assert "config.tau" in capsys.readouterr().err


def test_cli_device_choice(tmp_path, capsys):
    import torch

    data = _write(tmp_path / "d.jsonl", [{"text": "a b", "label": 0}, {"text": "c d", "label": 1}] * 20)
    base = ["reweight", "--data", data, "--outer-iters", "1"]
    assert main([*base, "--out", str(tmp_path / "o1"), "--device", "tpu"]) == 2
    assert "device: unknown device 'tpu'" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "o2"), "--device", "cpu"]) == 0
    if not torch.cuda.is_available():
        assert main([*base, "--out", str(tmp_path / "o3"), "--device", "cuda"]) == 2
        assert "torch sees no CUDA GPU" in capsys.readouterr().err
