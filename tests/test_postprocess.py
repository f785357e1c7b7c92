import numpy as np

from sungen_ray.generation.postprocess import clean_text, drop_reason
from sungen_ray.generation.prompts import PromptStream, label_cycle, label_targets, prompt_rows
from sungen_ray.tasks.spec import load_task


def test_clean_text_cuts_at_closing_quote_returned_by_engine():
    assert clean_text('A gripping, well acted film." And then more text', ['"']) == "A gripping, well acted film."
    assert clean_text('  Loved   it\n from start to end"', ['"']) == "Loved it from start to end"


def test_clean_text_without_stop_keeps_text_and_strips_edge_quotes():
    assert clean_text("“Quiet and lovely”", ['"']) == "Quiet and lovely"
    assert clean_text("", ['"']) == ""


def test_drop_reason():
    assert drop_reason("", 4) == "empty"
    assert drop_reason("too short", 4) == "too_short"
    assert drop_reason("this one has five words", 4) is None
    assert drop_reason("one two three four five six", 1, max_words=5) == "too_long"


def test_label_targets_are_balanced():
    assert label_targets(10, 3) == [4, 3, 3]
    assert sum(label_targets(64, 2)) == 64


def test_prompt_rows_interleave_labels_and_fill_conditions():
    spec = load_task("imdb")
    rows = prompt_rows(spec, [3, 3], seed=1, start_id=100, conditions=["Heat", "Alien"])
    assert [r["label"] for r in rows] == [0, 1, 0, 1, 0, 1]
    assert [r["row_id"] for r in rows] == list(range(100, 106))
    assert all(("Heat" in r["prompt"]) or ("Alien" in r["prompt"]) for r in rows)
    assert all("{condition}" not in r["prompt"] for r in rows)
    assert rows[1]["label_name"] == "positive" and "positive" in rows[1]["prompt"]


def test_feedback_examples_are_shown_in_the_same_template():
    spec = load_task("sst2")
    examples = {"positive": ["A warm, funny and moving film.", "Great acting all round."]}
    rows = prompt_rows(spec, [1, 1], seed=0, examples=examples, examples_per_prompt=2)
    neg, pos = rows
    assert neg["prompt"] == spec.labels[0].prompts[0]  # no examples for this label
    template = spec.labels[1].prompts[0]
    assert pos["prompt"].endswith(template) and pos["prompt"].count(template) == 3
    assert 'A warm, funny and moving film."\n' in pos["prompt"]


def test_label_cycle_spreads_labels_in_proportion_to_what_each_needs():
    assert label_cycle([250, 250]) == [0, 1]  # reduced by the gcd: a balanced task alternates
    cycle = label_cycle([100, 300])
    assert len(cycle) == 4 and cycle.count(1) == 3
    assert label_cycle([0, 7]) == [1]  # a full label gets no prompts
    three = label_cycle([2, 1, 1])
    assert sorted(three) == [0, 0, 1, 2] and three[0] != three[1]


def test_prompt_stream_rows_are_deterministic_unique_and_rotate_templates():
    spec = load_task("imdb")
    stream = PromptStream(spec, [3, 3], seed=1, start_id=100, conditions=["Heat", "Alien"])
    batch = stream({"id": np.arange(8)})
    assert batch["label"].tolist() == [0, 1] * 4
    assert batch["row_id"].tolist() == list(range(100, 108))
    assert all(("Heat" in p) or ("Alien" in p) for p in batch["prompt"])
    # any position computed alone (in another block, another worker) gives the same row
    again = PromptStream(spec, [3, 3], seed=1, start_id=100, conditions=["Heat", "Alien"])
    assert again.row(5) == {k: batch[k][5].item() if hasattr(batch[k][5], "item") else batch[k][5] for k in batch}
    sst2 = load_task("sst2")
    sst2.labels[1].prompts.append('Another positive template: "')
    rows = [PromptStream(sst2, [1, 1], seed=0).row(p) for p in range(8)]
    positives = [r["prompt"] for r in rows if r["label"] == 1]
    assert positives == [sst2.labels[1].prompts[k % 2] for k in range(4)]
