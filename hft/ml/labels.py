"""Labels without leakage: the direction of the close ``h`` bars ahead versus the close now.

The label of the decision bar ``t`` (a bar is known at its close) uses exactly two prices:
``close[t]`` and ``close[t+h]``. Rows whose future bar is missing (the end of the data, or a gap
in the bar series) get NaN, which callers drop: a NaN is never turned into a class.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def forward_return(close: pd.Series, horizon: int, interval: pd.Timedelta | None = None) -> pd.Series:
    """Return ``close[t+h] / close[t] - 1``; NaN where bar ``t+h`` is not exactly ``h`` intervals later."""
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    future = close.shift(-horizon)
    ret = future / close - 1.0
    if interval is not None and isinstance(close.index, pd.DatetimeIndex):
        times = pd.Series(close.index, index=close.index)
        # a gap in the bars (e.g. an exchange halt) would silently stretch the horizon
        ok = (times.shift(-horizon) - times) == interval * horizon
        ret = ret.where(ok)
    return ret


def direction_labels(
    close: pd.Series, horizon: int = 1, dead_zone_bps: float = 0.0, interval: pd.Timedelta | None = None
) -> pd.Series:
    """Label 1.0 if the close ``h`` bars ahead is higher, 0.0 otherwise, NaN when unknown or in the dead zone.

    ``dead_zone_bps`` > 0 blanks moves smaller than that many basis points (they are noise, not a
    direction); such rows are dropped like the unknown ones.
    """
    ret = forward_return(close, horizon, interval)
    label = pd.Series(np.where(ret > 0, 1.0, 0.0), index=close.index)
    label[ret.isna()] = np.nan
    if dead_zone_bps > 0:
        label[ret.abs() * 1e4 < dead_zone_bps] = np.nan
    return label


LABEL_KINDS = ("direction", "barrier")
BARRIER_VOL_BARS = 64  # the barrier's volatility: std of the last 64 one-bar log returns (= feature vol_64)


def barrier_width(
    close: pd.Series, horizon: int, k: float = 1.0, min_bps: float = 0.0, vol_bars: int = BARRIER_VOL_BARS
) -> pd.Series:
    """Half-width of the barriers at each decision bar (a fraction): max(k x sigma x sqrt(h), min_bps).

    sigma is the sample std of the last ``vol_bars`` one-bar log returns up to and including bar t
    (known at its close: the same number as the feature ``vol_64``); ``min_bps`` floors the width at
    the round trip, so a take-profit always pays the fees.
    """
    sigma = np.log(close).diff().rolling(vol_bars, min_periods=vol_bars).std()
    return np.maximum(k * sigma * np.sqrt(horizon), min_bps / 1e4)


def barrier_outcome(
    close: pd.Series,
    horizon: int,
    k: float = 1.0,
    min_bps: float = 0.0,
    interval: pd.Timedelta | None = None,
) -> tuple[pd.Series, pd.Series]:
    """Triple-barrier label and exit return of a long opened at close[t]; uses close[t..t+h] only.

    Take-profit at +w, stop at -w (w = :func:`barrier_width`), time limit h bars. Label 1.0 when
    the close reaches +w first, 0.0 when it reaches -w first, else the sign of the move at the time
    limit (so every decision with a known future is labelled: no selection by the future). The exit
    return is the close-to-close return where the first barrier was touched, or at t+h. NaN where
    bar t+h is unknown (end of data, a gap) or the width is (no 64-bar history yet).
    """
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    w = barrier_width(close, horizon, k, min_bps).to_numpy()
    c = close.to_numpy(dtype=np.float64)
    n = len(c)
    label = np.full(n, np.nan)
    exit_ret = np.full(n, np.nan)
    done = np.zeros(n, dtype=bool)
    for j in range(1, horizon + 1):
        fut = np.full(n, np.nan)
        if j < n:
            fut[: n - j] = c[j:]
        r = fut / c - 1.0
        up = ~done & (r >= w)
        down = ~done & (r <= -w)
        label[up], exit_ret[up] = 1.0, r[up]
        label[down], exit_ret[down] = 0.0, r[down]
        done |= up | down
        if j == horizon:
            rest = ~done & np.isfinite(r)
            label[rest] = np.where(r[rest] > 0, 1.0, 0.0)
            exit_ret[rest] = r[rest]
    known = forward_return(close, horizon, interval).notna().to_numpy() & np.isfinite(w)
    label[~known] = np.nan
    exit_ret[~known] = np.nan
    return pd.Series(label, index=close.index), pd.Series(exit_ret, index=close.index)


def make_labels(
    close: pd.Series,
    horizon: int = 1,
    kind: str = "direction",
    dead_zone_bps: float = 0.0,
    interval: pd.Timedelta | None = None,
    barrier_k: float = 1.0,
    barrier_min_bps: float = 0.0,
) -> tuple[pd.Series, pd.Series]:
    """(label, the return a position opened at t realises) for label ``kind``.

    ``direction``: close[t+h] > close[t], the return at t+h; ``barrier``: :func:`barrier_outcome`
    (the return where the position exits).
    """
    if kind == "direction":
        return (
            direction_labels(close, horizon, dead_zone_bps, interval),
            forward_return(close, horizon, interval),
        )
    if kind == "barrier":
        return barrier_outcome(close, horizon, barrier_k, barrier_min_bps, interval)
    raise ValueError(f"label kind must be one of {LABEL_KINDS}, got {kind!r}")
