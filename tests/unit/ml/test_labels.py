"""Labels: the label at t uses only close[t] and close[t+h]; unknown futures are NaN, never a class."""

from __future__ import annotations

import numpy as np
import pandas as pd

from hft.ml.labels import direction_labels, forward_return

STEP = pd.Timedelta(minutes=15)


def _close(n: int = 50, seed: int = 1) -> pd.Series:
    idx = pd.date_range("2024-01-01", periods=n, freq="15min", tz="UTC")
    return pd.Series(100 * np.exp(np.cumsum(np.random.default_rng(seed).normal(0, 0.01, n))), index=idx)


def test_label_at_t_uses_only_close_at_t_plus_h() -> None:
    close, h, t = _close(), 3, 20
    base = direction_labels(close, h, interval=STEP)
    other = close.copy()
    # move every price except close[t] and close[t+h]: the label at t must not change
    mask = np.ones(len(close), dtype=bool)
    mask[[t, t + h]] = False
    other[mask] *= np.random.default_rng(2).uniform(0.5, 1.5, mask.sum())
    assert direction_labels(other, h, interval=STEP).iloc[t] == base.iloc[t]
    flipped = close.copy()
    flipped.iloc[t + h] = close.iloc[t] * (0.9 if base.iloc[t] == 1 else 1.1)
    assert direction_labels(flipped, h, interval=STEP).iloc[t] == 1 - base.iloc[t]


def test_labels_without_a_future_are_nan_not_a_class() -> None:
    close = _close()
    lab = direction_labels(close, 2, interval=STEP)
    assert lab.iloc[-2:].isna().all()
    assert set(lab.iloc[:-2].unique()) <= {0.0, 1.0}


def test_a_gap_in_the_bars_blanks_labels_that_would_span_it() -> None:
    close = _close().drop(_close().index[30])  # bar 30 missing (an exchange halt)
    lab = direction_labels(close, 1, interval=STEP)
    assert np.isnan(lab.iloc[29])  # its next bar is 30 minutes later, not one interval
    assert not np.isnan(lab.iloc[28])


def test_dead_zone_drops_small_moves() -> None:
    close = _close()
    ret = forward_return(close, 1, STEP)
    lab = direction_labels(close, 1, dead_zone_bps=50.0, interval=STEP)
    small = (ret.abs() * 1e4 < 50).to_numpy()
    assert lab[small].isna().all()
    assert lab[~small & ret.notna().to_numpy()].notna().all()
