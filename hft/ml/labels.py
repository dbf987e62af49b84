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
