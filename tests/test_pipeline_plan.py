"""The driver's declared stages (issue 9): ``--describe`` prints the plan without running
anything, ``--stop-after`` names a stage or fails listing them, and a run directory finished
before the restructuring is still skipped stage by stage.

``fixtures/demo-run-before-issue9`` holds the ``stage.json`` files that the driver at commit
3dc0a3e (before issue 9) wrote for ``jobs/configs/demo.yaml`` with ``gold=null``: its stages were
recorded, not run. A config field added on purpose changes those hashes; re-record them then.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from jobs.sungen_pipeline import main as pipeline_main
from sungen_ray.cli import main as cli_main
from tests.test_pipeline_driver import stage_stamps

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "jobs" / "configs" / "demo.yaml"
BEFORE = Path(__file__).resolve().parent / "fixtures" / "demo-run-before-issue9"
STAGES = ["generate-0", "reweight-0", "select-0", "generate-1", "reweight-1", "select-1", "final"]


def _plan_lines(text: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split() for line in text.splitlines() if line.startswith("  ")}


def test_describe_prints_the_plan_and_runs_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli_main(["run", "--config", str(DEMO), "--describe", "--set", f"out={out}"]) == 0
    plan = _plan_lines(capsys.readouterr().out)
    assert list(plan) == STAGES
    assert all(len(row[1]) == 16 and row[2] == "run" for row in plan.values())
    assert len({row[1] for row in plan.values()}) == len(STAGES), "every stage has its own input hash"
    assert not out.exists(), "--describe must not create the run directory"


def test_stop_after_unknown_stage_fails_naming_the_stages(tmp_path, capsys):
    out = tmp_path / "run"
    assert pipeline_main(["--config", str(DEMO), "--set", f"out={out}", "--stop-after", "bogus"]) == 2
    err = capsys.readouterr().err
    assert "--stop-after 'bogus'" in err and all(name in err for name in STAGES)
    assert not out.exists(), "nothing ran"


def test_run_finished_before_the_restructuring_is_skipped(tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(BEFORE, out)
    # the recorded run kept 70% per label, reweighted with the settings of the 'paper' era (Adam lr
    # 0.25 from theta 0, raw alignments, one inner epoch), did no channel scoring and trained the
    # MLP head unweighted (the defaults then): with those settings given, nothing is redone
    sets = ["--set", f"out={out}", "--set", "gold=null", "--set", "select.fraction=0.7"]
    sets += ["--set", "reweight.outer_lr=0.25", "--set", "reweight.theta_init=zero"]
    sets += ["--set", "reweight.valid_source=weights", "--set", "reweight.align_norm=none"]
    sets += ["--set", "reweight.inner_epochs=1", "--set", "reweight.prior_scale=1.0", "--set", "select.weighted=false"]
    sets += ["--set", "channel.enabled=false", "--set", "final.tam={name: minilm}"]
    sets += ["--set", "baselines=[zerogen, confidence_tam, confidence_plm]"]
    assert pipeline_main(["--config", str(DEMO), *sets, "--describe"]) == 0
    plan = _plan_lines(capsys.readouterr().out)
    assert {name: row[2] for name, row in plan.items()} == dict.fromkeys(STAGES, "skip")

    stamps = stage_stamps(out)
    assert len(stamps) == len(STAGES)
    # a real run over it: every round stage is skipped (nothing starts Ray or an engine)
    assert pipeline_main(["--config", str(DEMO), *sets, "--stop-after", "select-1"]) == 0
    assert capsys.readouterr().out.count("done already, skipping") == 6
    assert stage_stamps(out) == stamps

    # and a changed input is not skipped: the plan says which stages would be redone
    assert pipeline_main(["--config", str(DEMO), *sets, "--set", "select.fraction=0.6", "--describe"]) == 0
    plan = _plan_lines(capsys.readouterr().out)
    assert [name for name, row in plan.items() if row[2] == "redo"] == ["select-0", "select-1", "final"]

    # where a stage computes is not an input: moving the run to another device resumes it
    device_sets = ["--set", "reweight.device=cpu", "--set", "final.device=cpu"]
    assert pipeline_main(["--config", str(DEMO), *sets, *device_sets, "--describe"]) == 0
    plan = _plan_lines(capsys.readouterr().out)
    assert {name: row[2] for name, row in plan.items()} == dict.fromkeys(STAGES, "skip")
    # a field added after the run was recorded changes the inputs once it leaves its default
    assert pipeline_main(["--config", str(DEMO), *sets, "--set", "reweight.tam.sparse=false", "--describe"]) == 0
    plan = _plan_lines(capsys.readouterr().out)
    assert plan["reweight-0"][2] == "redo"
    # generation.dtype came later too: at auto (float32 on CPU, as then) it resumes, bfloat16 redoes
    assert pipeline_main(["--config", str(DEMO), *sets, "--set", "generation.dtype=bfloat16", "--describe"]) == 0
    plan = _plan_lines(capsys.readouterr().out)
    assert plan["generate-0"][2] == "redo"
