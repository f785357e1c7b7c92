"""``sungen-ray predict`` on a bag-of-words model trained here: text, JSONL, CSV and Parquet inputs,
and the bad inputs a user really gives it (no model, empty file, no text column)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sungen_ray.cli import main
from sungen_ray.tam import final as final_model

POSITIVE = ["a wonderful warm funny film", "great acting and a lovely story", "brilliant moving and joyful"]
NEGATIVE = ["a dull boring mess of a film", "terrible acting and an awful plot", "tedious ugly and lifeless"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    texts = (NEGATIVE + POSITIVE) * 20
    labels = np.array(([0] * 3 + [1] * 3) * 20)
    cfg = final_model.FinalConfig(epochs=20)
    trained = final_model.fit(texts, labels, ["negative", "positive"], cfg)
    out = tmp_path_factory.mktemp("model")
    final_model.save(out, trained, {"task": "test"})
    return out


def _check_rows(rows, texts):
    assert [r["text"] for r in rows] == texts
    for r in rows:
        probs = [r["prob_negative"], r["prob_positive"]]
        assert abs(sum(probs) - 1) < 1e-5
        assert r["label"] == int(np.argmax(probs)) and r["label_name"] == ["negative", "positive"][r["label"]]


def test_predict_text_prints_label_and_probabilities(model_dir, capsys):
    assert main(["predict", "--model", str(model_dir), "--text", "a wonderful moving film", "--device", "cpu"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    _check_rows(rows, ["a wonderful moving film"])
    assert rows[0]["label_name"] == "positive" and rows[0]["prob_positive"] > 0.5


def test_predict_jsonl_to_csv_and_parquet_to_jsonl_agree(model_dir, tmp_path):
    texts = ["terrible boring film", "lovely warm story", "awful tedious acting", "joyful brilliant film"] * 3
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts)))
    out_csv = tmp_path / "pred.csv"
    # batch size 5: the 12 rows go through in three chunks, which must not change any row
    assert (
        main(["predict", "--model", str(model_dir), "--input", str(src), "--out", str(out_csv), "--batch-size", "5"])
        == 0
    )
    import pyarrow.csv as pacsv

    from_csv = pacsv.read_csv(out_csv).to_pylist()
    _check_rows(from_csv, texts)
    assert [r["label_name"] for r in from_csv[:4]] == ["negative", "positive", "negative", "positive"]

    parquet = tmp_path / "in.parquet"
    pq.write_table(pa.table({"text": texts, "other": list(range(len(texts)))}), parquet)
    out_jsonl = tmp_path / "pred.jsonl"
    assert main(["predict", "--model", str(model_dir), "--input", str(parquet), "--out", str(out_jsonl)]) == 0
    from_jsonl = [json.loads(line) for line in out_jsonl.read_text().splitlines()]
    _check_rows(from_jsonl, texts)
    assert [r["label"] for r in from_jsonl] == [r["label"] for r in from_csv]
    np.testing.assert_allclose(
        [r["prob_positive"] for r in from_jsonl], [r["prob_positive"] for r in from_csv], atol=1e-6
    )

    out_parquet = tmp_path / "pred.parquet"
    assert main(["predict", "--model", str(model_dir), "--input", str(src), "--out", str(out_parquet)]) == 0
    table = pq.read_table(out_parquet)
    assert table.column_names == ["text", "label", "label_name", "prob_negative", "prob_positive"]
    assert table.column("label").to_pylist() == [r["label"] for r in from_csv]


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing_model", "no trained model at"),
        ("empty_jsonl", "no rows to classify"),
        ("empty_csv", "cannot be read as .csv"),
        ("no_text_column", "column 'text' missing"),
        ("null_text", "row(s) have no text"),
        ("empty_text", "--text: empty text"),
        ("bad_out_suffix", "unsupported format .txt"),
    ],
)
def test_predict_bad_input_is_a_clear_error(model_dir, tmp_path, capsys, case, message):
    model, src, extra = str(model_dir), tmp_path / "in.jsonl", []
    if case == "missing_model":
        model = str(tmp_path / "nowhere")
        src.write_text(json.dumps({"text": "fine"}) + "\n")
    elif case == "empty_jsonl":
        src.write_text("")
    elif case == "empty_csv":
        src = tmp_path / "in.csv"
        src.write_text("")
    elif case == "no_text_column":
        src.write_text(json.dumps({"sentence": "a fine film"}) + "\n")
    elif case == "null_text":
        src.write_text(json.dumps({"text": "a fine film"}) + "\n" + json.dumps({"text": None}) + "\n")
    elif case == "bad_out_suffix":
        src.write_text(json.dumps({"text": "a fine film"}) + "\n")
        extra = ["--out", str(tmp_path / "pred.txt")]
    args = ["predict", "--model", model] + (["--text", "  "] if case == "empty_text" else ["--input", str(src)]) + extra
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err, err
    assert not list(tmp_path.glob("pred*")), "nothing is written on a bad input"


def test_predict_several_texts_prints_one_row_each_in_order(model_dir, capsys):
    texts = ["a wonderful moving film", "a dull boring mess", "great acting and a lovely story"]
    args = ["predict", "--model", str(model_dir), "--device", "cpu"]
    for text in texts:
        args += ["--text", text]
    assert main(args) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    _check_rows(rows, texts)
    assert [r["label_name"] for r in rows] == ["positive", "negative", "positive"]
