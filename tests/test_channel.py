"""The generator's channel scores, with the real embedded SmolLM2 (prefill only)."""

import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sungen_ray.curate.baselines import pool_score_columns, training_sets
from sungen_ray.errors import SungenError
from sungen_ray.plm.channel import (
    OWN_SCORES_FILE,
    ChannelConfig,
    OwnScore,
    add_channel_margin,
    channel_scores,
    label_prompts,
    rank_correlation,
    read_own_scores,
    write_own_scores,
)
from sungen_ray.tasks.spec import load_task

TEXTS = [
    "This movie was a wonderful, moving masterpiece and I loved every minute of it.",
    "An awful, boring mess of a film; I hated it and walked out.",
    "Brilliant acting and a beautiful story, the best film of the year.",
    "The worst movie I have ever seen, dull and painful from start to finish.",
]
SENTIMENT = np.array([1, 0, 1, 0])


def test_channel_scores_side_with_the_obvious_label(default_model):
    spec = load_task("sst2")
    scores = channel_scores(TEXTS, spec, default_model, batch_size=3)
    assert scores.scores.shape == (4, 2) and np.isfinite(scores.scores).all()
    assert (scores.scores.argmax(1) == SENTIMENT).all()
    assert (scores.margin(SENTIMENT) > 0).all() and (scores.margin(1 - SENTIMENT) < 0).all()
    # batching and length-sorting do not change a text's score
    alone = channel_scores(TEXTS[:1], spec, default_model, batch_size=1)
    assert np.allclose(alone.scores[0], scores.scores[0], atol=1e-3)


@pytest.mark.slow
def test_vllm_replicas_score_as_transformers_does(ray_local, default_model):
    # The driver scores on its live vLLM replicas (prompt log-probs): the same sums over the same
    # text tokens as the in-process transformers scorer, for every label of a 4-label task (both
    # in float32, named: a bfloat16 engine keeps ~3 significant digits).
    from sungen_ray.generation.engine_pool import EnginePool
    from sungen_ray.generation.engines import EngineOptions
    from sungen_ray.plm.channel import channel_scores_on_engines

    spec = load_task("agnews")
    texts = TEXTS + ["The central bank raised interest rates again as inflation stayed high."] * 3
    reference = channel_scores(texts, spec, default_model, batch_size=4).scores
    engines = EnginePool().use(
        "vllm", EngineOptions(model=default_model, decoding=spec.decoding, replicas=2, dtype="float32")
    )
    try:
        seen: list[int] = []
        on_engines = channel_scores_on_engines(
            texts, spec, default_model, engines, progress=lambda done, n: seen.append(done)
        ).scores
    finally:
        engines.shutdown()
    assert on_engines.shape == reference.shape == (len(texts), 4)
    assert np.allclose(on_engines, reference, rtol=1e-3, atol=1e-2), np.abs(on_engines - reference).max()
    assert (on_engines.argmax(1) == reference.argmax(1)).all()
    assert seen and seen[-1] == len(texts)


def test_pool_column_is_added_once_and_feeds_the_channel_filter(default_model, tmp_path):
    spec = load_task("sst2")
    labels = np.array([1, 1, 0, 0])  # rows 1 and 2 carry the wrong label
    f = tmp_path / "pool.parquet"
    pq.write_table(
        pa.table({"idx": pa.array(range(4), pa.int64()), "text": TEXTS, "label": pa.array(labels, pa.int32())}), f
    )
    assert add_channel_margin([f], spec, default_model)["texts"] == 4
    margin = pq.read_table(f).column("channel_margin").to_numpy()
    assert margin[0] > 0 and margin[3] > 0 and margin[1] < 0 and margin[2] < 0
    assert add_channel_margin([f], spec, default_model)["texts"] == 0  # already scored: kept

    table = pq.read_table(f).to_pandas().assign(weight=1.0, keep=[True, False, False, True])
    sets = training_sets(table, pool_score_columns(pq.read_table(f)), ["confidence_channel"], False, spec, None)
    assert sorted(sets["confidence_channel"][0]) == sorted([TEXTS[0], TEXTS[3]])


def test_labels_out_of_range_are_refused_before_scoring(default_model, tmp_path):
    f = tmp_path / "pool.parquet"
    pq.write_table(pa.table({"idx": [0], "text": ["a film"], "label": pa.array([5], pa.int32())}), f)
    with pytest.raises(SungenError, match="labels out of range"):
        add_channel_margin([f], load_task("sst2"), default_model)


def test_auto_scores_narrow_tasks_only_and_rank_correlation():
    assert ChannelConfig().active(2) and not ChannelConfig().active(14)
    assert ChannelConfig(enabled=True).active(14) and not ChannelConfig(enabled=False).active(2)
    assert rank_correlation(np.array([1, 2, 3, 4.0]), np.array([10, 20, 30, 40.0])) == pytest.approx(1.0)
    assert rank_correlation(np.array([1, 2, 3, 4.0]), np.array([4, 3, 2, 1.0])) == pytest.approx(-1.0)


def test_own_score_is_taken_from_generation_only_where_it_scored_the_same_tokens(default_model, tmp_path):
    spec = load_task("sst2")
    own = OwnScore(spec, default_model)
    tok, prompt = own.tokenizer, label_prompts(spec)[1]
    text = "A warm, funny film."
    sampled = tok(text + '"', add_special_tokens=False)["input_ids"]
    assert own(prompt, 1, text, sampled, -12.5) == -12.5
    assert math.isnan(own(prompt, 0, text, sampled, -12.5))  # not that label's prompt
    assert math.isnan(own('An example: "Dull."\n' + prompt, 1, text, sampled, -12.5))  # a prompt with examples
    runs_on = tok(text + '",', add_special_tokens=False)["input_ids"]  # the quote's token carries a comma
    assert runs_on != sampled and math.isnan(own(prompt, 1, text, runs_on, -12.5))
    assert math.isnan(own(prompt, 1, text, sampled[:-1], -12.5))  # stopped at the length limit: no quote
    assert math.isnan(own(prompt, 1, text, sampled, math.nan))  # an engine that gave no log-probs

    write_own_scores(tmp_path, np.array([3, 4, 5]), np.array([-1.5, np.nan, -2.0]))
    assert read_own_scores(tmp_path) == {3: -1.5, 5: -2.0}
    (tmp_path / OWN_SCORES_FILE).write_bytes(b"not parquet")
    assert read_own_scores(tmp_path) == {}  # unreadable: every label is scored, nothing else lost
    assert read_own_scores(tmp_path / "missing") == {}


def test_summed_logprob_needs_every_sampled_token():
    from sungen_ray.generation.engines import summed_logprob

    per_position = [{5: {"logprob": -1.0}}, {"7": {"logprob": -0.5}}]  # keys as Ray may hand them back
    assert summed_logprob(per_position, [5, 7]) == -1.5
    assert math.isnan(summed_logprob(per_position[:1], [5, 7]))  # a position without its token
    assert math.isnan(summed_logprob([], []))  # nothing sampled (an aborted row): no score, not 0
    assert math.isnan(summed_logprob(None, [5]))
