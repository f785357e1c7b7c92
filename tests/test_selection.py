import numpy as np
import pytest

from sungen_ray.curate.selection import SelectConfig, label_shares, select
from sungen_ray.errors import SungenError


def test_per_label_top_keeps_label_balance_where_global_top_drifts():
    # label 1's weights are all higher, so a global top-half keeps label 1 only
    labels = np.array([0] * 10 + [1] * 10)
    weights = np.concatenate([np.linspace(0.1, 0.4, 10), np.linspace(0.6, 0.9, 10)])
    glob = select(weights, labels, SelectConfig(mode="top", fraction=0.5))
    assert set(labels[glob]) == {1}
    per = select(weights, labels, SelectConfig(mode="per_label_top", fraction=0.5))
    shares = label_shares(labels, per, 2)
    assert shares[0]["kept"] == shares[1]["kept"] == 5 and shares[0]["share"] == 0.5
    # and within each label the highest weights are the ones kept
    assert per[5:10].all() and not per[0:5].any()


def test_threshold_and_all():
    labels = np.array([0, 0, 1, 1])
    weights = np.array([0.2, 0.7, 0.9, 0.4])
    assert select(weights, labels, SelectConfig(mode="threshold", threshold=0.5)).tolist() == [False, True, True, False]
    assert select(weights, labels, SelectConfig(mode="all")).all()


def test_bad_selection_inputs():
    with pytest.raises(SungenError, match="kept no samples"):
        select(np.array([0.1, 0.2]), np.array([0, 1]), SelectConfig(mode="threshold", threshold=0.9))
    with pytest.raises(SungenError, match="NaN"):
        select(np.array([np.nan, 0.2]), np.array([0, 1]), SelectConfig())
    cfg = SelectConfig(fraction=0)
    with pytest.raises(SungenError, match="fraction"):
        cfg.validate()


def test_weighted_training_scales_weights_per_label_so_no_label_trains_as_rarer():
    """Weights rank samples within a label; a label whose weights sit lower as a block must not
    weigh less in the fit. With weights constant inside each label, the weighted fit is the
    unweighted one."""
    from reweight_data import sentiment_texts

    from sungen_ray.config import from_dict
    from sungen_ray.curate.curated import curate
    from sungen_ray.data.labelled import LabelledData
    from sungen_ray.tam import final as final_model

    texts, labels = sentiment_texts(200)
    data = LabelledData(np.arange(200), list(texts), np.asarray(labels, np.int64), "test")
    weights = np.where(labels == 0, 0.2, 0.8)  # label 0's prior sat lower as a block
    curated = curate(data, weights, SelectConfig(mode="per_label_top", fraction=0.5, weighted=True), 2)
    kept = curated.data.label
    for k in (0, 1):
        assert curated.weights[kept == k].sum() == pytest.approx((kept == k).sum())
    cfg = from_dict(final_model.FinalConfig, {"tam": {"name": "bow", "buckets": 1 << 12}, "seed": 0, "device": "cpu"})
    weighted = final_model.fit(curated.data.text, kept, ["neg", "pos"], cfg, curated.weights)
    plain = final_model.fit(curated.data.text, kept, ["neg", "pos"], cfg)
    assert np.allclose(weighted.predict(texts), plain.predict(texts), atol=1e-5)
    # within a label the order still counts: a kept row with twice the weight weighs twice as much
    ranked = np.where(labels == 0, np.linspace(0.1, 0.3, 200), np.linspace(0.5, 0.9, 200))
    curated = curate(data, ranked, SelectConfig(mode="per_label_top", fraction=0.5, weighted=True), 2)
    w, kept = curated.weights, curated.data.label
    assert np.allclose(
        w[kept == 0] / w[kept == 0].mean(), ranked[curated.keep][kept == 0] / ranked[curated.keep][kept == 0].mean()
    )
