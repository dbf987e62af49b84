"""Every feature, once: an incremental state per symbol, folded by the stream and the batch alike.

:class:`FeatureState` folds closed bars one by one. The feature calculator (the stream) calls
:meth:`FeatureState.update` per closed bar; :func:`compute_features` (training, backfill) folds
the same state over a bar DataFrame and lays the rows out as a frame. There is no second,
vectorised copy of any formula: a new feature is written once, in :meth:`FeatureState._step`
(issue 22). ``bench/features_batch.py`` measures the fold over real 1m bars: a backfill of 3 years
of 1m bars per symbol takes ~42 s for bar_features_ohlcv_v1, ~74 s for v2 (docs/features.md).

Definitions (``c`` close, ``h`` high, ``l`` low, ``v`` volume; ``i`` the bar index):

* ``ret_k = ln c_i - ln c_{i-k}``; ``vol_n``: sample std (ddof 1) of the last ``n`` one-bar
  log returns; ``hl_range = ln(h / l)``.
* ``rsi_14``: Wilder's RSI in [0, 100]; gains and losses of ``c_i - c_{i-1}`` smoothed by an
  RMA (alpha 1/14) seeded with the first change; 50 when both averages are zero.
* ``ema_dist_n = c / EMA_n(c) - 1`` (EMA seeded with the first close); ``sma_dist_n = c / SMA_n - 1``.
* ``macd = (EMA_12 - EMA_26) / c``, ``macd_signal = EMA_9(EMA_12 - EMA_26) / c``,
  ``macd_hist = macd - macd_signal`` (the real signal line, scaled by the close).
* ``bb_pos_20 = (c - lower) / (upper - lower)`` and ``bb_width_20 = (upper - lower) / SMA_20``
  with bands ``SMA_20 ± 2 σ`` (population σ); 0.5 and 0 when σ is zero.
* ``atr_14 = RMA_14(true range) / c`` (first true range ``h - l``).
* ``volume_z_20``, ``trade_count_z_20``: ``(x - mean_20) / std_20`` (ddof 1; 0 when std is 0).
* ``hour_sin``, ``hour_cos``: minute of day of the bar's open time on the unit circle.
* ``buy_imbalance = (2 buy_volume - v) / v`` in [-1, 1] (0 for an empty bar);
  ``vwap_dist = c / vwap - 1``.
* bar_features_ohlcv_v2 adds (:meth:`FeatureState._step_v2`): ``ret_32/96/288``, ``vol_256``,
  ``vol_ratio_16_256``, Parkinson ``pk_vol_n`` and Garman-Klass ``gk_vol_n`` (16, 64), ``body``,
  ``upper_wick``, ``lower_wick``, ``close_pos``, ``gap``, ``range_z_96``, ``range_pos_96``,
  ``volume_z_96``, ``volume_ratio_4_96``, ``dow_sin/cos``, ``dmi_14``, ``adx_14``,
  ``trend_ratio_64``, ``eff_ratio_32``, ``vol_pct_672`` (definitions in docs/features.md).
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right, insort
from collections import deque
from collections.abc import Mapping, Sequence
from itertools import islice
from operator import itemgetter, mul
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from hft.features import spec as S
from hft.features.bars import Bar, has_trade_columns, normalize_bars
from hft.features.spec import FEATURE_SPEC, FeatureSpec

_TWO_PI_PER_MINUTE = 2.0 * math.pi / 1440.0
_NS_PER_MINUTE = 60_000_000_000
_NAN = math.nan

# feature names, formatted once (the fold runs ~1.5 M bars per symbol-year of 1m bars)
_RET = tuple((k, f"ret_{k}") for k in S.RETURN_LAGS)
_VOL = tuple((n, f"vol_{n}") for n in S.VOL_WINDOWS)
_SMA = tuple((n, f"sma_dist_{n}") for n in S.SMA_WINDOWS)
_RSI = f"rsi_{S.RSI_PERIOD}"
_EMA_F, _EMA_S = f"ema_dist_{S.EMA_FAST}", f"ema_dist_{S.EMA_SLOW}"
_BB_POS, _BB_WIDTH = f"bb_pos_{S.BB_WINDOW}", f"bb_width_{S.BB_WINDOW}"
_ATR = f"atr_{S.ATR_PERIOD}"
_VOLUME_Z = f"volume_z_{S.VOLUME_Z_WINDOW}"
_COUNT_Z = f"trade_count_z_{S.TRADE_COUNT_Z_WINDOW}"
# v2
_RET2 = tuple((k, f"ret_{k}") for k in S.RETURN_LAGS_V2)
_VOL_LONG = f"vol_{S.LONG_VOL_WINDOW}"
_VOL_RATIO = f"vol_ratio_{S.VOL_WINDOWS[0]}_{S.LONG_VOL_WINDOW}"
_VOL_SHORT = f"vol_{S.VOL_WINDOWS[0]}"
_PK = tuple((n, f"pk_vol_{n}") for n in S.RANGE_VOL_WINDOWS)
_GK = tuple((n, f"gk_vol_{n}") for n in S.RANGE_VOL_WINDOWS)
_RANGE_Z, _RANGE_POS = f"range_z_{S.RANGE_WINDOW}", f"range_pos_{S.RANGE_WINDOW}"
_VOLUME_Z_LONG = f"volume_z_{S.RANGE_WINDOW}"
_VOLUME_RATIO = f"volume_ratio_{S.VOLUME_RATIO_SHORT}_{S.RANGE_WINDOW}"
_ADX, _DMI = f"adx_{S.ADX_PERIOD}", f"dmi_{S.ADX_PERIOD}"
_TREND = f"trend_ratio_{S.TREND_WINDOW}"
_TREND_VOL = f"vol_{S.TREND_WINDOW}"
_EFF = f"eff_ratio_{S.EFFICIENCY_WINDOW}"
_VOL_PCT = f"vol_pct_{S.VOL_PCT_WINDOW}"
_V2 = frozenset(S.OHLCV_V2_FEATURES)
_PK_SCALE = 1.0 / (4.0 * math.log(2.0))
_GK_SCALE = 2.0 * math.log(2.0) - 1.0
_TWO_PI_PER_WEEK_MINUTE = 2.0 * math.pi / 10080.0
_EPOCH_WEEKDAY_MINUTES = 3 * 1440  # 1970-01-01 was a Thursday: minute 0 of the week is Monday 00:00

FloatArray = NDArray[np.float64]


def _mean_std(window: Sequence[float], ddof: int) -> tuple[float, float]:
    n = len(window)
    m = sum(window) / n
    devs = list(map(m.__rsub__, window))  # x - m, in C, summed left to right
    var = sum(map(mul, devs, devs)) / (n - ddof)
    return m, math.sqrt(var)


class _Window:
    """A sliding window's values with running sums (O(1) per bar for long windows).

    The sums are recomputed exactly (``math.fsum``) once per window length, so rounding never
    accumulates beyond one window: after warm-up a value depends on where the series started
    only in the last bits (far below 1e-9).
    """

    __slots__ = ("k", "n", "q", "s1", "s2")

    def __init__(self, n: int) -> None:
        self.n = n
        self.q: deque[float] = deque(maxlen=n)
        self.s1 = self.s2 = 0.0
        self.k = 0

    def push(self, x: float) -> None:
        q = self.q
        if len(q) == self.n:
            old = q[0]
            self.s1 -= old
            self.s2 -= old * old
        q.append(x)
        self.s1 += x
        self.s2 += x * x
        self.k += 1
        if self.k == self.n:
            self.k = 0
            self.s1 = math.fsum(q)
            self.s2 = math.fsum(v * v for v in q)

    @property
    def full(self) -> bool:
        return len(self.q) == self.n

    def mean(self) -> float:
        return self.s1 / self.n

    def std(self) -> float:
        """Sample std (ddof 1); 0 for a window of equal values (not a rounding residue)."""
        var = (self.s2 - self.s1 * self.s1 / self.n) / (self.n - 1)
        return math.sqrt(var) if var > 1e-13 * self.s2 / self.n else 0.0


class _Extreme:
    """Rolling max (``sign`` 1) or min (``sign`` -1) over the last ``n`` values: a monotonic deque."""

    __slots__ = ("i", "n", "q", "sign")

    def __init__(self, n: int, sign: float) -> None:
        self.n, self.sign, self.i = n, sign, 0
        self.q: deque[tuple[int, float]] = deque()

    def push(self, x: float) -> float:
        q, key = self.q, self.sign * x
        while q and q[-1][1] <= key:
            q.pop()
        q.append((self.i, key))
        if q[0][0] <= self.i - self.n:
            q.popleft()
        self.i += 1
        return self.sign * q[0][1]


class FeatureState:
    """Incremental features of one symbol: ``update`` folds one closed bar at a time.

    ``update`` returns the feature dict (ordered like ``spec.names``) once ``spec.warmup_bars``
    bars have been seen, before that ``None``. Bars must arrive in time order without gaps
    (the bar builder fills empty buckets).
    """

    def __init__(self, spec: FeatureSpec = FEATURE_SPEC) -> None:
        self.spec = spec
        self._warmup = spec.warmup_bars
        self._trades = spec.uses_trades
        self.n = 0
        self.last_open_time_ns: int | None = None
        self._logc: deque[float] = deque(maxlen=max(S.RETURN_LAGS) + 1)
        self._ret: deque[float] = deque(maxlen=max(S.VOL_WINDOWS))
        self._close: deque[float] = deque(maxlen=max(max(S.SMA_WINDOWS), S.BB_WINDOW))
        self._volume: deque[float] = deque(maxlen=S.VOLUME_Z_WINDOW)
        self._count: deque[float] = deque(maxlen=S.TRADE_COUNT_Z_WINDOW)
        self._prev_close = 0.0
        self._ema_fast = self._ema_slow = self._signal = 0.0
        self._gain = self._loss = self._atr = 0.0
        self._af, self._as = S.ema_alpha(S.EMA_FAST), S.ema_alpha(S.EMA_SLOW)
        self._asig = S.ema_alpha(S.MACD_SIGNAL)
        self._arsi, self._aatr = S.wilder_alpha(S.RSI_PERIOD), S.wilder_alpha(S.ATR_PERIOD)
        self._v2 = bool(_V2 & set(spec.names))
        if self._v2:
            self._logc = deque(maxlen=max(S.RETURN_LAGS + S.RETURN_LAGS_V2) + 1)
            self._ret_long = _Window(S.LONG_VOL_WINDOW)
            self._pk = [(_Window(n), name) for n, name in _PK]
            self._gk = [(_Window(n), name) for n, name in _GK]
            self._range = _Window(S.RANGE_WINDOW)
            self._vols = _Window(S.RANGE_WINDOW)
            self._hi = _Extreme(S.RANGE_WINDOW, 1.0)
            self._lo = _Extreme(S.RANGE_WINDOW, -1.0)
            self._prev_high = self._prev_low = 0.0
            self._pdm = self._mdm = self._adx = 0.0
            self._aadx = S.wilder_alpha(S.ADX_PERIOD)
            self._vol_hist: deque[float] = deque(maxlen=S.VOL_PCT_WINDOW)
            self._vol_sorted: list[float] = []
            self._prev_close_v2 = 0.0

    @property
    def ready(self) -> bool:
        """Whether the whole vector is defined (warm-up done)."""
        return self.n > self._warmup

    def update(self, bar: Bar | Mapping[str, Any]) -> dict[str, float] | None:
        """Fold one closed bar (a :class:`Bar` or a mapping with bar columns and ``open_time_ns``)."""
        if isinstance(bar, Bar):
            return self.update_values(
                bar.open_time_ns,
                bar.high,
                bar.low,
                bar.close,
                bar.volume,
                float(bar.trade_count),
                bar.buy_volume,
                bar.vwap,
                bar.open,
            )
        return self.update_values(
            int(bar["open_time_ns"]),
            float(bar["high"]),
            float(bar["low"]),
            float(bar["close"]),
            float(bar["volume"]),
            float(bar.get("trade_count", _NAN)),
            float(bar.get("buy_volume", _NAN)),
            float(bar.get("vwap", _NAN)),
            float(bar.get("open", _NAN)),
        )

    def update_values(
        self,
        open_time_ns: int,
        high: float,
        low: float,
        close: float,
        volume: float,
        trade_count: float = _NAN,
        buy_volume: float = _NAN,
        vwap: float = _NAN,
        open_price: float = _NAN,
    ) -> dict[str, float] | None:
        """Fold one closed bar given as values; see :meth:`update` (``open_price``: v2's body and gap)."""
        f = self._step(open_time_ns, high, low, close, volume, trade_count, buy_volume, vwap, open_price)
        if self.n <= self._warmup:
            return None
        return {name: f[name] for name in self.spec.names}

    def _step(
        self,
        open_time_ns: int,
        high: float,
        low: float,
        close: float,
        volume: float,
        trade_count: float,
        buy_volume: float,
        vwap: float,
        open_price: float = _NAN,
    ) -> dict[str, float]:
        """Fold one bar and return every feature its data already define.

        A windowed feature appears once its window is full; a recursive one (EMA, RMA) from its
        first input on, before its seed has decayed: :func:`compute_features` blanks each
        feature before ``spec.warmup[name]``, and ``update`` returns nothing before
        ``spec.warmup_bars``.
        """
        i = self.n
        self.n += 1
        self.last_open_time_ns = open_time_ns
        logc = math.log(close)
        self._logc.append(logc)
        self._close.append(close)
        self._volume.append(volume)
        if self._trades:
            self._count.append(trade_count)
        hl = high - low
        if i == 0:
            self._ema_fast = self._ema_slow = close
            self._signal = 0.0
            self._atr = hl
        else:
            prev = self._prev_close
            self._ret.append(logc - self._logc[-2])
            change = close - prev
            gain, loss = (change, 0.0) if change > 0 else (0.0, -change)
            if i == 1:
                self._gain, self._loss = gain, loss
            else:
                self._gain = (1.0 - self._arsi) * self._gain + self._arsi * gain
                self._loss = (1.0 - self._arsi) * self._loss + self._arsi * loss
            self._ema_fast = (1.0 - self._af) * self._ema_fast + self._af * close
            self._ema_slow = (1.0 - self._as) * self._ema_slow + self._as * close
            self._signal = (1.0 - self._asig) * self._signal + self._asig * (self._ema_fast - self._ema_slow)
            tr = max(hl, abs(high - prev), abs(low - prev))
            self._atr = (1.0 - self._aatr) * self._atr + self._aatr * tr
        self._prev_close = close

        f: dict[str, float] = {}
        logcs = self._logc
        nl = len(logcs)
        for k, name in _RET:
            if nl > k:
                f[name] = logc - logcs[-1 - k]
        rets = list(self._ret)
        for n, name in _VOL:
            if len(rets) >= n:
                f[name] = _mean_std(rets[-n:], 1)[1]
        f["hl_range"] = math.log(high / low)
        if i >= 1:
            gl = self._gain + self._loss
            f[_RSI] = 100.0 * self._gain / gl if gl > 0 else 50.0
        f[_EMA_F] = close / self._ema_fast - 1.0
        f[_EMA_S] = close / self._ema_slow - 1.0
        closes = list(self._close)
        for n, name in _SMA:
            if len(closes) >= n:
                f[name] = close / (sum(closes[-n:]) / n) - 1.0
        macd = self._ema_fast - self._ema_slow
        f["macd"] = macd / close
        f["macd_signal"] = self._signal / close
        f["macd_hist"] = (macd - self._signal) / close
        if len(closes) >= S.BB_WINDOW:
            m, sd = _mean_std(closes[-S.BB_WINDOW :], 0)
            if sd > 0:
                lower = m - S.BB_K * sd
                f[_BB_POS] = (close - lower) / (2.0 * S.BB_K * sd)
                f[_BB_WIDTH] = 2.0 * S.BB_K * sd / m
            else:
                f[_BB_POS] = 0.5
                f[_BB_WIDTH] = 0.0
        f[_ATR] = self._atr / close
        if len(self._volume) == S.VOLUME_Z_WINDOW:
            m, sd = _mean_std(self._volume, 1)
            f[_VOLUME_Z] = (volume - m) / sd if sd > 0 else 0.0
        angle = ((open_time_ns // _NS_PER_MINUTE) % 1440) * _TWO_PI_PER_MINUTE
        f["hour_sin"] = math.sin(angle)
        f["hour_cos"] = math.cos(angle)
        if self._trades:
            # a bar without trade columns (a kline in the warm-up) gives NaN: absent, not zero
            f["buy_imbalance"] = (2.0 * buy_volume - volume) / volume if volume > 0 else buy_volume * 0.0
            f["vwap_dist"] = close / vwap - 1.0 if vwap > 0 else (vwap if math.isnan(vwap) else 0.0)
            if len(self._count) == S.TRADE_COUNT_Z_WINDOW:
                m, sd = _mean_std(self._count, 1)
                # a window holding a kline without trade count gives NaN (absent)
                f[_COUNT_Z] = (trade_count - m) / sd if sd > 0 else sd * 0.0
        if self._v2:
            self._step_v2(f, i, open_time_ns, open_price, high, low, close, volume, rets)
        return f

    def _step_v2(
        self,
        f: dict[str, float],
        i: int,
        open_time_ns: int,
        open_: float,
        high: float,
        low: float,
        close: float,
        volume: float,
        rets: list[float],
    ) -> None:
        """bar_features_ohlcv_v2's own features (the v1 ones are already in ``f``)."""
        logcs = self._logc
        logc = logcs[-1]
        nl = len(logcs)
        for k, name in _RET2:
            if nl > k:
                f[name] = logc - logcs[-1 - k]
        # close-to-close volatility over a long window, and the short one relative to it
        if i >= 1:
            self._ret_long.push(rets[-1])
        if self._ret_long.full:
            sd = self._ret_long.std()
            f[_VOL_LONG] = sd
            f[_VOL_RATIO] = f[_VOL_SHORT] / sd if sd > 0 else 1.0
        # range-based volatility per bar: Parkinson and Garman-Klass
        hl = math.log(high / low)
        oc = math.log(close / open_)
        pk = hl * hl * _PK_SCALE
        gk = 0.5 * hl * hl - _GK_SCALE * oc * oc
        for w, name in self._pk:
            w.push(pk)
            if w.full:
                f[name] = math.sqrt(w.mean())
        for w, name in self._gk:
            w.push(gk)
            if w.full:
                f[name] = math.sqrt(max(w.mean(), 0.0))
        # the bar's shape and the gap to the previous close
        f["body"] = oc
        f["upper_wick"] = math.log(high / max(open_, close))
        f["lower_wick"] = math.log(min(open_, close) / low)
        f["close_pos"] = (close - low) / (high - low) if high > low else 0.5
        if i >= 1:
            f["gap"] = math.log(open_ / self._prev_close_v2)
        self._prev_close_v2 = close
        # range and volume relative to the last RANGE_WINDOW bars
        rw = self._range
        rw.push(hl)
        top, bottom = self._hi.push(high), self._lo.push(low)
        vw = self._vols
        vw.push(volume)
        if rw.full:
            sd = rw.std()
            f[_RANGE_Z] = (hl - rw.mean()) / sd if sd > 0 else 0.0
            f[_RANGE_POS] = (close - bottom) / (top - bottom) if top > bottom else 0.5
            m, sd = vw.mean(), vw.std()
            f[_VOLUME_Z_LONG] = (volume - m) / sd if sd > 0 else 0.0
            short = sum(islice(reversed(vw.q), S.VOLUME_RATIO_SHORT)) / S.VOLUME_RATIO_SHORT
            f[_VOLUME_RATIO] = short / m if m > 0 else 1.0
        minute_of_week = (open_time_ns // _NS_PER_MINUTE + _EPOCH_WEEKDAY_MINUTES) % 10080
        f["dow_sin"] = math.sin(minute_of_week * _TWO_PI_PER_WEEK_MINUTE)
        f["dow_cos"] = math.cos(minute_of_week * _TWO_PI_PER_WEEK_MINUTE)
        # trend strength: Wilder's directional movement (DMI, ADX) on the ATR's true range
        if i >= 1:
            up, down = high - self._prev_high, self._prev_low - low
            pdm = up if up > down and up > 0 else 0.0
            mdm = down if down > up and down > 0 else 0.0
            a = self._aadx
            if i == 1:
                self._pdm, self._mdm = pdm, mdm
            else:
                self._pdm = (1.0 - a) * self._pdm + a * pdm
                self._mdm = (1.0 - a) * self._mdm + a * mdm
            di_sum = self._pdm + self._mdm  # +DI + -DI, both over the same ATR
            dmi = (self._pdm - self._mdm) / di_sum if di_sum > 0 else 0.0
            dx = 100.0 * abs(dmi)
            self._adx = dx if i == 1 else (1.0 - a) * self._adx + a * dx
            f[_DMI] = dmi
            f[_ADX] = self._adx
        self._prev_high, self._prev_low = high, low
        # trend relative to noise, and Kaufman's efficiency ratio
        vol = f.get(_TREND_VOL)
        if vol is not None and nl > S.TREND_WINDOW:
            move = logc - logcs[-1 - S.TREND_WINDOW]
            f[_TREND] = move / (vol * math.sqrt(S.TREND_WINDOW)) if vol > 0 else 0.0
        if len(rets) >= S.EFFICIENCY_WINDOW:
            path = sum(map(abs, rets[-S.EFFICIENCY_WINDOW :]))
            f[_EFF] = abs(logc - logcs[-1 - S.EFFICIENCY_WINDOW]) / path if path > 0 else 0.0
        # volatility regime: where vol_16 stands among its last VOL_PCT_WINDOW values
        v16 = f.get(_VOL_SHORT)
        if v16 is not None:
            hist, ranked = self._vol_hist, self._vol_sorted
            if len(hist) == S.VOL_PCT_WINDOW:
                del ranked[bisect_left(ranked, hist[0])]
            hist.append(v16)
            insort(ranked, v16)
            if len(hist) == S.VOL_PCT_WINDOW:
                f[_VOL_PCT] = bisect_right(ranked, v16) / S.VOL_PCT_WINDOW


# --------------------------------------------------------------------------------------------
# batch: the same state, folded over a frame
# --------------------------------------------------------------------------------------------


def _checked(bars: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    b = normalize_bars(bars)
    if spec.uses_trades and not has_trade_columns(b):
        raise ValueError(
            f"spec {spec.version} needs trade-derived bar columns; use FEATURE_SPEC_OHLCV for OHLCV-only bars"
        )
    if not b.index.is_monotonic_increasing or b.index.has_duplicates:
        raise ValueError("bars must be sorted by open time without duplicates")
    return b


def _open_ns(b: pd.DataFrame) -> NDArray[np.int64]:
    idx = pd.DatetimeIndex(b.index)
    return np.asarray(idx.as_unit("ns").asi8, dtype=np.int64)


def compute_features(bars: pd.DataFrame, spec: FeatureSpec = FEATURE_SPEC) -> pd.DataFrame:
    """Compute the spec's features over one symbol's bars (indexed like the bars).

    Folds :class:`FeatureState` over the bars: the stream's numbers, bit for bit.
    ``bars``: indexed by UTC open time, columns open/high/low/close/volume and, for a spec that
    uses trades, trade_count/buy_volume/vwap (kline names from ``read_ohlcv_csv`` are mapped).
    A bar whose trade columns are NaN (a kline among ticks bars) gives NaN trade features.
    Each feature is NaN before its own warm-up (``spec.warmup``); rows from
    ``spec.warmup_bars`` on are complete. Bars must be consecutive (no missing buckets) for
    the windows to mean what they say; a gap in the input is taken as adjacency.
    """
    b = _checked(bars, spec)
    n = len(b)
    state = FeatureState(spec)
    t = _open_ns(b).tolist()
    h, lo, c, v = (b[col].to_numpy(dtype="float64").tolist() for col in ("high", "low", "close", "volume"))
    if spec.uses_trades:
        tc, bv, vw = (
            b[col].to_numpy(dtype="float64").tolist() for col in ("trade_count", "buy_volume", "vwap")
        )
    else:
        tc = bv = vw = [_NAN] * n
    o = b["open"].to_numpy(dtype="float64").tolist() if "open" in b.columns else [_NAN] * n
    names = spec.names
    step = state._step
    rows: list[Sequence[float]] = []
    pick = itemgetter(*names) if len(names) > 1 else (lambda f: [f[names[0]]])
    complete = spec.warmup_bars  # from here on every feature is in ``f``
    for i in range(n):
        f = step(t[i], h[i], lo[i], c[i], v[i], tc[i], bv[i], vw[i], o[i])
        rows.append(pick(f) if i >= complete else [f.get(name, _NAN) for name in names])
    out = np.array(rows, dtype=np.float64).reshape(n, len(names))
    warmup = spec.warmup
    for j, name in enumerate(names):
        w = warmup[name]
        if w:
            out[:w, j] = _NAN
    return pd.DataFrame(out, index=b.index, columns=list(names))


def fold_features(bars: pd.DataFrame, spec: FeatureSpec = FEATURE_SPEC) -> pd.DataFrame:
    """The stream's view of :func:`compute_features`: rows before ``spec.warmup_bars`` are NaN.

    ``update`` says nothing during warm-up; afterwards its rows are those of the batch.
    """
    out = compute_features(bars, spec)
    out.iloc[: spec.warmup_bars] = _NAN
    return out
