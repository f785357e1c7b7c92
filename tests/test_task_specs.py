import pytest

from sungen_ray.errors import SungenError
from sungen_ray.tasks.spec import builtin_tasks, load_task

PAPER_TASKS = ["imdb", "sst2", "rotten_tomatoes", "elec", "yelp", "subj", "agnews", "dbpedia"]


def test_all_paper_tasks_are_built_in():
    assert set(PAPER_TASKS) <= set(builtin_tasks())


@pytest.mark.parametrize("task", PAPER_TASKS)
def test_builtin_spec_loads_with_paper_decoding(task):
    spec = load_task(task)
    assert spec.name == task
    assert spec.decoding.top_p == 0.9 and spec.decoding.top_k == 0
    assert spec.num_labels == {"agnews": 4, "dbpedia": 14}.get(task, 2)
    for label in spec.labels:
        for prompt in label.prompts:
            assert prompt.endswith('"'), "prompts open a quote the sample closes"
            assert ("{condition}" in prompt) == (spec.condition is not None)


def test_sst2_label_order_matches_gold_data():
    assert load_task("sst2").label_names == ["negative", "positive"]
    assert load_task("agnews").label_names == ["World", "Sports", "Business", "Sci/Tech"]


def test_unknown_task_lists_builtins():
    with pytest.raises(SungenError, match="unknown task 'imbd'.*sst2"):
        load_task("imbd")


def _write(tmp_path, text):
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return str(path)


GOOD = """
name: mine
labels:
  - name: bad
    prompts: ['A bad review: "']
  - name: good
    prompts: ['A good review: "']
"""


def test_user_spec_file_loads(tmp_path):
    spec = load_task(_write(tmp_path, GOOD + "decoding:\n  max_new_tokens: 20\n"))
    assert spec.label_names == ["bad", "good"] and spec.decoding.max_new_tokens == 20


@pytest.mark.parametrize(
    "extra, field",
    [
        ("decoding:\n  top_p: high\n", "decoding.top_p"),
        ("decoding:\n  top_p: 1.5\n", "top_p"),
        ("decoding:\n  temprature: 0.7\n", "temprature"),
        ("condition:\n  num_values: 3\n", "condition.prompt"),
    ],
)
def test_malformed_spec_names_the_field(tmp_path, extra, field):
    with pytest.raises(SungenError, match=field.replace(".", r"\.")):
        load_task(_write(tmp_path, GOOD + extra))


def test_spec_errors_name_label_fields(tmp_path):
    with pytest.raises(SungenError, match=r"labels\[0\]\.prompts"):
        load_task(_write(tmp_path, "name: x\nlabels:\n  - name: a\n  - name: b\n    prompts: ['x']\n"))
    with pytest.raises(SungenError, match="condition"):
        load_task(_write(tmp_path, GOOD.replace("A bad review", "{condition} is bad")))
    with pytest.raises(SungenError, match="at least 2 labels"):
        load_task(_write(tmp_path, "name: x\nlabels:\n  - name: a\n    prompts: ['x']\n"))
    with pytest.raises(SungenError, match="not valid YAML"):
        load_task(_write(tmp_path, "name: [unclosed\n"))
