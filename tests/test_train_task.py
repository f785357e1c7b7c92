"""``sungen-ray train`` on a user's own file: label names come from ``--task`` or a ``label_name``
column, so the model ``evaluate --task`` accepts carries the task's names, not '0' and '1'."""

from __future__ import annotations

import json

import pytest

from sungen_ray.cli import main
from sungen_ray.tam import final as final_model

POSITIVE = ["a wonderful warm funny film", "great acting and a lovely story", "brilliant moving and joyful"]
NEGATIVE = ["a dull boring mess of a film", "terrible acting and an awful plot", "tedious ugly and lifeless"]


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture()
def int_labelled(tmp_path):
    rows = [{"text": t, "label": 0} for t in NEGATIVE] + [{"text": t, "label": 1} for t in POSITIVE]
    return _write(tmp_path / "train.jsonl", rows * 5)


def _train(data, out, *extra):
    return main(
        ["train", "--data", str(data), "--out", str(out), "--tam", "bow", "--epochs", "2", "--device", "cpu", *extra]
    )


def test_train_task_names_integer_labels_and_evaluate_task_accepts_the_model(int_labelled, tmp_path, capsys):
    out = tmp_path / "model"
    assert _train(int_labelled, out, "--task", "sst2") == 0
    assert final_model.load(out).label_names == ["negative", "positive"]
    gold = _write(
        tmp_path / "gold.jsonl", [{"text": "a lovely warm film", "label": 1}, {"text": "a dull mess", "label": 0}]
    )
    capsys.readouterr()
    assert main(["evaluate", "--model", str(out), "--gold", str(gold), "--task", "sst2"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[0])["n"] == 2


def test_train_reads_label_names_from_a_label_name_column(tmp_path):
    rows = [{"text": t, "label": 0, "label_name": "negative"} for t in NEGATIVE]
    rows += [{"text": t, "label": 1, "label_name": "positive"} for t in POSITIVE]
    out = tmp_path / "model"
    assert _train(_write(tmp_path / "train.jsonl", rows * 5), out) == 0
    assert final_model.load(out).label_names == ["negative", "positive"]


@pytest.mark.parametrize(
    "case, message",
    [
        ("unknown_task", "unknown task 'no-such-task'"),
        ("names_disagree", "label 0 is named 'bad' in the data but 'negative' in task sst2"),
        ("label_out_of_range", "out of range for a task with 2 labels"),
    ],
)
def test_train_task_mismatch_is_a_clear_error(tmp_path, capsys, case, message):
    rows = [{"text": t, "label": 0} for t in NEGATIVE] + [{"text": t, "label": 1} for t in POSITIVE]
    task = "sst2"
    if case == "unknown_task":
        task = "no-such-task"
    elif case == "names_disagree":
        rows = [dict(r, label_name=["bad", "good"][r["label"]]) for r in rows]
    else:
        rows.append({"text": "a third kind of film", "label": 2})
    out = tmp_path / "model"
    assert _train(_write(tmp_path / "train.jsonl", rows), out, "--task", task) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err, err
    assert not out.exists(), "nothing is written on a bad input"
