"""A minilm-ft model from ``sungen-ray train`` is a standard transformers text classifier (issue 23):
transformers loads it with no custom code, with the task's label names, and its pipeline gives
the label ``sungen-ray predict`` gives on every row of a gold file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from json_strings import json_strings

from sungen_ray.cli import main
from sungen_ray.tam import final as final_model

DATA = Path(__file__).parent / "fixtures" / "sentiment-mini"


@pytest.fixture(scope="module")
def ft_model(tmp_path_factory):
    out = tmp_path_factory.mktemp("minilm-ft") / "model"
    args = ["train", "--data", str(DATA / "train.jsonl"), "--task", "sst2", "--out", str(out)]
    assert main(args + ["--tam", "minilm-ft", "--epochs", "2", "--seed", "0", "--device", "cpu"]) == 0
    return out


def test_transformers_loads_the_directory_with_the_task_label_names(ft_model):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(ft_model)
    assert type(model) is BertForSequenceClassification
    assert model.config.id2label == {0: "negative", 1: "positive"}
    assert model.config.label2id == {"negative": 0, "positive": 1}
    assert AutoTokenizer.from_pretrained(ft_model)("a fine film")["input_ids"][0] == 101  # [CLS]
    assert not list(ft_model.glob("*.py")), "no custom code travels with the model"
    # the directory names no path of this machine (its metadata names data and generator by name)
    for name in ("config.json", "tokenizer_config.json", final_model.MODEL_FILE):
        found = list(json_strings(json.loads((ft_model / name).read_text())))
        assert not [s for s in found if s.startswith("/") or str(Path.home()) in s], name


def test_pipeline_and_predict_agree_on_every_gold_row(ft_model, tmp_path, capsys):
    from transformers import pipeline

    gold = [json.loads(line) for line in (DATA / "gold.jsonl").read_text().splitlines()]
    texts = [r["text"] for r in gold]
    clf = pipeline("text-classification", model=str(ft_model), device="cpu")
    scores = clf(texts, top_k=None)
    from_pipeline = [max(s, key=lambda x: x["score"]) for s in scores]

    out = tmp_path / "pred.jsonl"
    assert main(["predict", "--model", str(ft_model), "--input", str(DATA / "gold.jsonl"), "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["text"] for r in rows] == texts
    assert [p["label"] for p in from_pipeline] == [r["label_name"] for r in rows]
    for s, r in zip(scores, rows):  # the same function, not only the same argmax
        by_label = {x["label"]: x["score"] for x in s}
        assert by_label["positive"] == pytest.approx(r["prob_positive"], abs=1e-4)
    assert len({r["label_name"] for r in rows}) == 2, "a trained model, not a constant"
    capsys.readouterr()
    assert main(["evaluate", "--model", str(ft_model), "--gold", str(DATA / "gold.jsonl"), "--task", "sst2"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[0])["n"] == len(gold)


def test_a_mean_pooled_minilm_ft_model_from_an_earlier_release_still_loads(tmp_path):
    # model.json version 1 + this package's module state: what minilm-ft wrote before issue 23
    import dataclasses

    import numpy as np
    import torch
    from safetensors.torch import save_file

    from sungen_ray.tam.config import TamConfig
    from sungen_ray.tam.minilm_ft import MeanPooledMiniLM, MiniLMTokenEncoder

    torch.manual_seed(0)
    old = MeanPooledMiniLM(2).eval()
    save_file({k: v.contiguous() for k, v in old.state_dict().items()}, str(tmp_path / final_model.WEIGHTS_FILE))
    payload = {
        "format": final_model.FORMAT,
        "version": 1,
        "tam": dataclasses.asdict(TamConfig(name="minilm-ft")),
        "label_names": ["negative", "positive"],
        "encoder": {"kind": "minilm-ft", "model": final_model.MINILM_ID, "max_len": 64},
        "meta": {},
    }
    (tmp_path / final_model.MODEL_FILE).write_text(json.dumps(payload))
    texts = ["a gorgeous, witty film", "a dull mess"]
    loaded = final_model.load(tmp_path)
    with torch.inference_mode():
        expected = torch.softmax(old(*MiniLMTokenEncoder(64).encode(texts).batch(torch.arange(2))), 1).numpy()
    np.testing.assert_allclose(loaded.predict(texts), expected, atol=1e-5)
