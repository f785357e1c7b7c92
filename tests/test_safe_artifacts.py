"""The final model is safetensors + JSON: loading never unpickles, so a crafted file runs no code."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sungen_ray.errors import SungenError
from sungen_ray.tam import final as final_model
from sungen_ray.tam.registry import TamConfig
from tests.reweight_data import sentiment_texts

REPO = Path(__file__).resolve().parents[1]


class _RunsCode:
    """Unpickling this calls ``Path.touch(marker)``: proof that a loader executed the payload."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _fit(name: str) -> final_model.TrainedModel:
    texts, labels = sentiment_texts(64)
    cfg = final_model.FinalConfig(tam=TamConfig(name=name, buckets=2048, dim=8, vocab_size=500, max_len=16), epochs=1)
    return final_model.fit(texts, labels, ["negative", "positive"], cfg)


@pytest.mark.parametrize("name", ["bow", "lstm"])
def test_save_load_round_trip_is_json_and_safetensors(tmp_path, name):
    trained = _fit(name)
    final_model.save(tmp_path, trained, {"task": "sst2"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "model.safetensors"]
    meta = json.loads((tmp_path / "model.json").read_text())
    assert meta["label_names"] == ["negative", "positive"] and meta["encoder"]["kind"] == name
    loaded = final_model.load(tmp_path)
    texts = ["a wonderful brilliant film", "a dull and painful plot"]
    np.testing.assert_array_equal(loaded.predict(texts), trained.predict(texts))
    np.testing.assert_array_equal(
        final_model.load(tmp_path / "model.safetensors").predict(texts), trained.predict(texts)
    )


def test_minilm_encoder_state_is_its_identity_only():
    state = final_model.encoder_state(final_model.MiniLMEncoder())
    assert state == {"kind": "minilm", "model": final_model.MINILM_ID, "max_len": 128}
    assert isinstance(final_model.encoder_from_state(state, Path("m.json")), final_model.MiniLMEncoder)


@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_malicious_model_pt_is_refused_and_runs_nothing(tmp_path, writer):
    marker = tmp_path / "pwned"
    evil = tmp_path / "model" / "model.pt"
    evil.parent.mkdir()
    payload = {"state_dict": _RunsCode(marker)}
    if writer == "pickle":
        evil.write_bytes(pickle.dumps(payload))
    else:
        torch.save(payload, evil)
    for target in (evil.parent, evil):
        with pytest.raises(SungenError, match=r"old-format \(pickled\).*re-train or convert"):
            final_model.load(target)
    assert not marker.exists()
    # the same command line as a user: a one-line error, exit status 2, and still no marker
    cli = subprocess.run(
        [sys.executable, "-m", "sungen_ray.cli", "evaluate", "--model", str(evil.parent), "--gold", str(evil)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert cli.returncode != 0 and "re-train" in cli.stderr, cli.stderr
    assert not marker.exists()
    # the payload is live: a loader that unpickled it would have run it
    if writer == "pickle":
        pickle.loads(evil.read_bytes())
    else:
        torch.load(evil, weights_only=False)  # the call the old loader made
    assert marker.exists()


def test_no_unpickling_loader_left_in_the_package():
    hits = subprocess.run(
        ["grep", "-rn", "weights_only=False", str(REPO / "sungen_ray")], capture_output=True, text=True
    ).stdout
    assert hits == ""


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "model.safetensors").write_bytes(b"\x00" * 10), "unreadable safetensors"),
        (lambda d: (d / "model.safetensors").unlink(), "model.safetensors: missing"),
        (lambda d: (d / "model.json").write_text("{"), "not a sungen-ray model file"),
        (lambda d: _edit(d, version=99), "re-train or convert"),
        (lambda d: _edit(d, encoder={"kind": "word2vec"}), "encoder.kind"),
        (lambda d: _edit(d, label_names=["a", "b", "c"]), "do not fit"),
    ],
)
def test_damaged_model_dir_gets_a_clear_error(tmp_path, damage, message):
    final_model.save(tmp_path, _fit("bow"))
    damage(tmp_path)
    with pytest.raises(SungenError, match=message):
        final_model.load(tmp_path)


def _edit(d: Path, **fields) -> None:
    meta = json.loads((d / "model.json").read_text())
    meta.update(fields)
    (d / "model.json").write_text(json.dumps(meta))
