"""Leakage: features at a decision time ignore later bars; shuffled labels leave nothing to learn."""

from __future__ import annotations

import numpy as np
import pandas as pd

from hft.ml.dataset import build_dataset, default_feature_set
from hft.ml.metrics import roc_auc
from hft.ml.models import FitConfig, fit_lightgbm


def test_altering_bars_after_a_decision_time_changes_no_feature_at_that_time(btc_bars: pd.DataFrame) -> None:
    bars = btc_bars.iloc[:3000]
    fs = default_feature_set()
    cut = bars.index[2000]  # open time of the first altered bar
    altered = bars.copy()
    after = altered.index >= cut
    altered.loc[after, ["open", "high", "low", "close"]] *= 1.37
    altered.loc[after, "volume"] *= 5
    a = build_dataset({"BTCUSDT": bars}, fs, "15m")
    b = build_dataset({"BTCUSDT": altered}, fs, "15m")
    known = a.times <= cut.value  # decisions made when bar `cut` had not even opened
    assert known.sum() > 1000
    np.testing.assert_array_equal(a.X[known], b.X[known])
    # labels of rows whose future bar closed before the cut are unchanged too; the later ones differ
    settled = a.times + 15 * 60 * 10**9 <= cut.value
    np.testing.assert_array_equal(a.y[settled], b.y[settled])
    assert not np.array_equal(a.X[~known], b.X[~known])


def test_shuffled_labels_drop_roc_auc_to_one_half(btc_bars: pd.DataFrame) -> None:
    ds = build_dataset({"BTCUSDT": btc_bars}, default_feature_set(), "15m")
    rows = ds.labeled()
    train, test = rows[: int(len(rows) * 0.7)], rows[int(len(rows) * 0.7) + 8 :]
    y = ds.y.copy()
    y[train] = np.random.default_rng(0).permutation(y[train])
    params = {
        "num_leaves": 15,
        "learning_rate": 0.05,
        "min_data_in_leaf": 200,
        "feature_fraction": 0.8,
        "bagging_fraction": 0.8,
        "lambda_l2": 1.0,
        "num_boost_round": 150,
    }
    model = fit_lightgbm(ds.X, y, train, None, params, FitConfig(threads=1))
    auc = roc_auc(ds.y[test], model.predict(ds.X[test]))
    assert abs(auc - 0.5) < 0.03, auc
