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
