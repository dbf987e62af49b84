"""Issue 23 item 1: triple-barrier labels (take-profit / stop / time limit in units of recent
volatility) look no further than the horizon; multi-horizon datasets; non-overlapping positions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hft.ml.metrics as M
from hft.ml.labels import barrier_outcome, barrier_width, make_labels

STEP = pd.Timedelta(minutes=15)


def _close(n: int = 300, seed: int = 3) -> pd.Series:
    idx = pd.date_range("2024-01-01", periods=n, freq="15min", tz="UTC")
    return pd.Series(100 * np.exp(np.cumsum(np.random.default_rng(seed).normal(0, 0.002, n))), index=idx)


def test_barrier_label_uses_only_closes_up_to_the_horizon() -> None:
    close, h, t = _close(), 8, 150
    label, ret = barrier_outcome(close, h, k=1.0, interval=STEP)
    other = close.copy()
    other.iloc[t + h + 1 :] *= np.random.default_rng(5).uniform(0.5, 1.5, len(close) - t - h - 1)
    label2, ret2 = barrier_outcome(other, h, k=1.0, interval=STEP)
    assert label2.iloc[: t + 1].equals(label.iloc[: t + 1])  # nothing after t + h moves a label at <= t
    assert ret2.iloc[: t + 1].equals(ret.iloc[: t + 1])
    assert label.iloc[-h:].isna().all()
    assert label.iloc[:64].isna().all()


def test_first_touched_barrier_decides_else_the_sign_at_the_time_limit() -> None:
    close = _close()
    t, h = 200, 4
    w = float(barrier_width(close, h, k=1.0).iloc[t])
    c0 = float(close.iloc[t])
    up_first = close.copy()
    up_first.iloc[t + 1 : t + h + 1] = [c0 * (1 + 1.5 * w), c0 * (1 - 3 * w), c0, c0]
    lab, ret = barrier_outcome(up_first, h, k=1.0, interval=STEP)
    assert lab.iloc[t] == 1.0
    assert ret.iloc[t] == pytest.approx(1.5 * w)
    down_first = close.copy()
    down_first.iloc[t + 1 : t + h + 1] = [c0 * (1 - 0.5 * w), c0 * (1 - 1.2 * w), c0 * (1 + 3 * w), c0]
    lab, ret = barrier_outcome(down_first, h, k=1.0, interval=STEP)
    assert lab.iloc[t] == 0.0
    assert ret.iloc[t] == pytest.approx(-1.2 * w)
    neither = close.copy()
    neither.iloc[t + 1 : t + h + 1] = [c0 * (1 + 0.5 * w), c0 * (1 - 0.5 * w), c0, c0 * (1 - 0.1 * w)]
    lab, ret = barrier_outcome(neither, h, k=1.0, interval=STEP)
    assert lab.iloc[t] == 0.0
    assert ret.iloc[t] == pytest.approx(-0.1 * w)


def test_barrier_width_is_floored_at_the_round_trip_and_grows_with_sqrt_h() -> None:
    close = _close()
    w1, w16 = barrier_width(close, 1), barrier_width(close, 16)
    np.testing.assert_allclose(w16.dropna(), 4 * w1.dropna())
    assert (barrier_width(close, 1, min_bps=22.0).dropna() >= 22e-4 - 1e-15).all()
    sigma = np.log(close).diff().iloc[-64:].std()
    assert w1.iloc[-1] == pytest.approx(sigma)  # the feature vol_64's definition


def test_a_gap_inside_the_horizon_gives_no_label() -> None:
    close = _close().drop(_close().index[180])
    label, _ = make_labels(close, 4, "barrier", interval=STEP)
    assert label.iloc[176:180].isna().all()
    with pytest.raises(ValueError):
        make_labels(close, 4, "nope")


def test_positions_do_not_overlap_within_the_horizon() -> None:
    n, h = 64, 4
    times = np.arange(n, dtype=np.int64) * STEP.value
    p = np.full(n, 0.9)
    fwd = np.full(n, 0.01)
    costs = M.Costs(fee_bps=10, slippage_bps=1, buy_threshold=0.55, sell_threshold=0.45)
    # the long + short diagnostic: a position per signal, non-overlapping within h bars
    assert M.backtest(p, fwd, times, costs)["long_short"]["trades"] == n
    bt = M.backtest(p, fwd, times, costs, hold_ns=h * STEP.value)
    assert bt["long_short"]["trades"] == n // h
    # the bot's book (issue 23): one position, closed at bar t + h, the next opened from t + h + 1
    assert M.backtest(p, fwd, times, costs)["trades"] == n // 2
    assert bt["trades"] == -(-n // (h + 1))
    assert bt["exit_times"][0] - bt["entry_times"][0] == h * STEP.value
    # two symbols at the same times: one position each
    sym = np.array(["A", "B"] * (n // 2))
    t2 = np.repeat(np.arange(n // 2, dtype=np.int64) * STEP.value, 2)
    two = M.backtest(p, fwd, t2, costs, hold_ns=h * STEP.value, groups=sym, bar_ns=STEP.value)
    assert two["long_short"]["trades"] == 2 * (n // 2 // h)
    assert two["trades"] == 2 * -(-(n // 2) // (h + 1))
