"""Cross-asset features of a symbol pair (BTC for ETH and the reverse), written once (issue 23, item 2).

:class:`CrossAssetState` folds one bar close of a symbol and the close of its partner at the same
bar open time; :func:`compute_cross_features` folds it over both symbols' bar frames (training).
The stream has no caller yet (docs/features.md, "Left for a follow-up"): the calculator would have
to see both symbols (one instance over both partitions) and emit a bar once its partner's bar of
the same open time closed. These features are **not in any FeatureSpec**: a model given one
symbol's CSV (``hft evaluate --data``) could not compute them.

Definitions (``c`` the symbol's close, ``p`` its partner's; log returns ``r = Δ ln c``, ``q = Δ ln p``):

* ``x_ret_k = ln p_i - ln p_{i-k}`` (k = 1, 4, 16): the partner's recent returns;
* ``x_corr_96``: Pearson correlation of the last 96 one-bar log returns of both (0 when one is flat);
* ``x_spread_16 = (ln c_i - ln c_{i-16}) - (ln p_i - ln p_{i-16})``: relative move over 16 bars;
* ``x_spread_z_96``: z-score (ddof 1) of the log price ratio ``ln c - ln p`` over 96 bars.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from types import MappingProxyType

import numpy as np
import pandas as pd

from hft.features.bars import normalize_bars
from hft.features.compute import _mean_std

CROSS_RETURN_LAGS = (1, 4, 16)
CROSS_CORR_WINDOW = 96
CROSS_SPREAD_LAG = 16
CROSS_SPREAD_Z_WINDOW = 96
DEFAULT_PARTNERS: MappingProxyType[str, str] = MappingProxyType({"BTCUSDT": "ETHUSDT", "ETHUSDT": "BTCUSDT"})

_RETS = tuple((k, f"x_ret_{k}") for k in CROSS_RETURN_LAGS)
_CORR = f"x_corr_{CROSS_CORR_WINDOW}"
_SPREAD = f"x_spread_{CROSS_SPREAD_LAG}"
_SPREAD_Z = f"x_spread_z_{CROSS_SPREAD_Z_WINDOW}"
CROSS_WARMUP: MappingProxyType[str, int] = MappingProxyType(
    {
        **{name: k for k, name in _RETS},
        _CORR: CROSS_CORR_WINDOW,
        _SPREAD: CROSS_SPREAD_LAG,
        _SPREAD_Z: CROSS_SPREAD_Z_WINDOW - 1,
    }
)
CROSS_FEATURES: tuple[str, ...] = tuple(CROSS_WARMUP)


class CrossAssetState:
    """Cross-asset features of one symbol against its partner, one aligned bar at a time."""

    def __init__(self) -> None:
        lags = max(max(CROSS_RETURN_LAGS), CROSS_SPREAD_LAG) + 1
        self.n = 0
        self._ls: deque[float] = deque(maxlen=lags)
        self._lp: deque[float] = deque(maxlen=lags)
        self._rs: deque[float] = deque(maxlen=CROSS_CORR_WINDOW)
        self._rp: deque[float] = deque(maxlen=CROSS_CORR_WINDOW)
        # the log ratio sits near a constant (ln BTC/ETH ~ 3): two-pass moments, not running sums
        self._ratio: deque[float] = deque(maxlen=CROSS_SPREAD_Z_WINDOW)

    def update(self, close: float, partner_close: float) -> dict[str, float]:
        """Fold the closes of one bar open time; return the features defined so far (all after warm-up)."""
        self.n += 1
        ls, lp = math.log(close), math.log(partner_close)
        s, p = self._ls, self._lp
        if s:
            self._rs.append(ls - s[-1])
            self._rp.append(lp - p[-1])
        s.append(ls)
        p.append(lp)
        f: dict[str, float] = {}
        n = len(p)
        for k, name in _RETS:
            if n > k:
                f[name] = lp - p[-1 - k]
        if n > CROSS_SPREAD_LAG:
            f[_SPREAD] = (ls - s[-1 - CROSS_SPREAD_LAG]) - (lp - p[-1 - CROSS_SPREAD_LAG])
        if len(self._rs) == CROSS_CORR_WINDOW:
            f[_CORR] = _corr(self._rs, self._rp)
        r = self._ratio
        r.append(ls - lp)
        if len(r) == CROSS_SPREAD_Z_WINDOW:
            m, sd = _mean_std(r, 1)
            f[_SPREAD_Z] = (ls - lp - m) / sd if sd > 0 else 0.0
        return f


def _corr(x: deque[float], y: deque[float]) -> float:
    n = len(x)
    mx, my = sum(x) / n, sum(y) / n
    dx = [a - mx for a in x]
    dy = [b - my for b in y]
    sxx = sum(a * a for a in dx)
    syy = sum(b * b for b in dy)
    if sxx <= 0 or syy <= 0:
        return 0.0
    return sum(a * b for a, b in zip(dx, dy, strict=True)) / math.sqrt(sxx * syy)


def compute_cross_features(
    bars: Mapping[str, pd.DataFrame], partners: Mapping[str, str] = DEFAULT_PARTNERS
) -> dict[str, pd.DataFrame]:
    """Fold :class:`CrossAssetState` over each symbol of ``bars`` whose partner is in ``bars`` too.

    Rows are the symbol's bars; the partner's close at the same open time is its bar of that open
    time or, when it has none, its last earlier one (both are closed when the symbol's bar closes).
    Rows before the partner's first bar are NaN and the fold starts after them. Each feature is
    NaN before its warm-up (``CROSS_WARMUP``, counted from the first folded row).
    """
    out: dict[str, pd.DataFrame] = {}
    for sym, own in bars.items():
        other = partners.get(sym)
        if other is None or other not in bars:
            continue
        b = normalize_bars(own)
        pc = normalize_bars(bars[other])["close"].astype("float64")
        partner = pc.reindex(b.index.union(pc.index)).ffill().reindex(b.index).to_numpy()
        close = b["close"].to_numpy(dtype="float64")
        res = np.full((len(b), len(CROSS_FEATURES)), math.nan)
        state = CrossAssetState()
        start = int(np.argmax(~np.isnan(partner))) if (~np.isnan(partner)).any() else len(b)
        for i in range(start, len(b)):
            f = state.update(float(close[i]), float(partner[i]))
            res[i] = [f.get(name, math.nan) for name in CROSS_FEATURES]
        for j, name in enumerate(CROSS_FEATURES):
            res[start : start + CROSS_WARMUP[name], j] = math.nan
        out[sym] = pd.DataFrame(res, index=b.index, columns=list(CROSS_FEATURES))
    return out
