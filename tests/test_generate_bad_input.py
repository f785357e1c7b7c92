"""Bad input to ``generate`` fails before any engine starts, with the field or path named."""

from __future__ import annotations

import json

import pytest

from sungen_ray.cli import main
from sungen_ray.errors import SungenError
from sungen_ray.generation.config import GenerateConfig
from sungen_ray.generation.pipeline import generate
from sungen_ray.plm.prepare import resolve_model


def _gen(tmp_path, *extra):
    return main(["generate", "--task", "sst2", "--num-samples", "8", "--out", str(tmp_path / "o"), *extra])


def test_unknown_task(tmp_path, capsys):
    assert main(["generate", "--task", "imbd", "--num-samples", "8", "--out", str(tmp_path / "o")]) == 2
    assert "unknown task 'imbd'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("n", ["0", "-5"])
def test_non_positive_num_samples(tmp_path, capsys, n):
    assert main(["generate", "--task", "sst2", "--num-samples", n, "--out", str(tmp_path / "o")]) == 2
    assert "num_samples: must be > 0" in capsys.readouterr().err


def test_malformed_spec_file(tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: x\nlabels:\n  - name: a\n    prompts: ['a: \"']\n  - name: b\n    promts: ['b: \"']\n")
    assert main(["generate", "--task", str(spec), "--num-samples", "8", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "labels[1]" in err and "promts" in err


def test_missing_model_dir(tmp_path, capsys):
    assert _gen(tmp_path, "--model", str(tmp_path / "no-such-model")) == 2
    assert "--model: directory not found" in capsys.readouterr().err


def test_model_dir_without_config(tmp_path):
    (tmp_path / "m").mkdir()
    with pytest.raises(SungenError, match="no config.json"):
        resolve_model(str(tmp_path / "m"))


def test_out_dir_holding_another_run_is_refused_and_untouched(tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    manifest = {"status": "complete", "config_hash": "0000", "task": "imdb", "requested": 100, "seed": 1}
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SungenError, match="holds another run.*imdb"):
        generate(GenerateConfig(task="sst2", num_samples=8, out=str(out)))
    assert json.loads((out / "manifest.json").read_text()) == manifest


def test_out_dir_with_unrelated_files_is_refused(tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(SungenError, match="not empty"):
        generate(GenerateConfig(task="sst2", num_samples=8, out=str(out)))
    assert (out / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("engine", "tgi", "engine: must be one of"),
        ("replicas", 0, "replicas"),
        ("batch_size", 0, "batch_size"),
        ("max_num_seqs", 0, "max_num_seqs: must be >= 1"),
        ("cpus_per_replica", 0, "cpus_per_replica: must be >= 1"),
        ("dtype", "fp8", "dtype: must be one of"),
    ],
)
def test_bad_generate_config_fields(tmp_path, field, value, message):
    cfg = GenerateConfig(task="sst2", num_samples=8, out=str(tmp_path / "o"))
    setattr(cfg, field, value)
    with pytest.raises(SungenError, match=message):
        generate(cfg)
