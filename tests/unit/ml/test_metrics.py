"""Metrics: AUC agrees with scikit-learn, the backtest charges costs per trade, intervals bracket."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

from hft.ml import metrics as M


def test_roc_auc_matches_scikit_learn_with_ties() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 2000).astype(float)
    p = np.round(rng.random(2000) * 0.3 + 0.2 * y, 2)  # many ties
    assert abs(M.roc_auc(y, p) - roc_auc_score(y, p)) < 1e-12


def test_backtest_trades_only_confident_signals_and_pays_round_trip_costs() -> None:
    costs = M.Costs(fee_bps=10, slippage_bps=1, buy_threshold=0.55, sell_threshold=0.45, notional=1000)
    p = np.array([0.60, 0.50, 0.40, 0.56, 0.52])
    ret = np.array([0.0030, 0.05, -0.0010, -0.0020, 0.01])  # the 0.50 and 0.52 rows are not traded
    times = np.arange(5, dtype=np.int64) * 15 * 60 * 10**9
    bt = M.backtest(p, ret, times, costs)
    # the bot's book: long-only, each position closed after one bar; the 0.40 call opens no short
    assert bt["trades"] == 2
    assert bt["long_trades"] == 2
    assert bt["short_trades"] == 0
    gross_bps = 30 - 20
    assert abs(bt["gross_pnl"] - gross_bps / 1e4 * 1000) < 1e-9
    assert abs(bt["net_pnl_after_fees"] - (gross_bps - 2 * 22) / 1e4 * 1000) < 1e-9
    assert bt["max_drawdown"] > 0
    # the diagnostic long + short book trades the short too
    ls = bt["long_short"]
    assert (ls["trades"], ls["long_trades"], ls["short_trades"]) == (3, 2, 1)
    assert abs(ls["net_pnl_after_fees"] - (30 + 10 - 20 - 3 * 22) / 1e4 * 1000) < 1e-9


def test_bootstrap_interval_brackets_the_point_estimate() -> None:
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 3000).astype(float)
    p = np.clip(0.5 + 0.1 * (y - 0.5) + rng.normal(0, 0.2, 3000), 0.01, 0.99)
    point = M.classification(y, p)
    ci = M.bootstrap_ci(y, p, n_boot=100)
    assert ci["accuracy_ci95"][0] <= point["accuracy"] <= ci["accuracy_ci95"][1]
    assert ci["roc_auc_ci95"][0] <= point["roc_auc"] <= ci["roc_auc_ci95"][1]
    assert point["base_rate"] >= 0.5


def test_calibration_curve_of_calibrated_predictions_follows_the_diagonal() -> None:
    rng = np.random.default_rng(5)
    p = rng.random(20000)
    y = (rng.random(20000) < p).astype(float)
    cal = M.calibration_curve(y, p, bins=5)
    assert np.allclose(cal["mean_predicted"], cal["observed"], atol=0.03)
