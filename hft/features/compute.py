"""Every feature, twice: an incremental state per symbol and its vectorised batch twin.

:class:`FeatureState` folds closed bars one by one (the feature calculator, the stream);
:func:`compute_features` computes the same numbers over a bar DataFrame at once (training,
backfill). The parity test holds them equal to 1e-9 on the shared real data. Change a
formula in both places or the test fails.

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

scipy is imported inside the batch functions: it costs about a second at start-up, and the
stream's incremental state never needs it.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from operator import mul
from typing import Any

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import NDArray

from hft.features import spec as S
from hft.features.bars import Bar, has_trade_columns, normalize_bars
from hft.features.spec import FEATURE_SPEC, FeatureSpec

_TWO_PI_PER_MINUTE = 2.0 * math.pi / 1440.0
_NS_PER_MINUTE = 60_000_000_000

FloatArray = NDArray[np.float64]


# --------------------------------------------------------------------------------------------
# incremental
# --------------------------------------------------------------------------------------------


def _mean_std(window: Sequence[float], ddof: int) -> tuple[float, float]:
    n = len(window)
    m = sum(window) / n
    devs = list(map(m.__rsub__, window))  # x - m, in C; the same sums, left to right, as the batch
    var = sum(map(mul, devs, devs)) / (n - ddof)
    return m, math.sqrt(var)


class FeatureState:
    """Incremental features of one symbol: ``update`` folds one closed bar at a time.

    ``update`` returns the feature dict (ordered like ``spec.names``) once ``spec.warmup_bars``
    bars have been seen, before that ``None``. Bars must arrive in time order without gaps
    (the bar builder fills empty buckets).
    """

    def __init__(self, spec: FeatureSpec = FEATURE_SPEC) -> None:
        self.spec = spec
        self._warmup = spec.warmup_bars
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
            )
        return self.update_values(
            int(bar["open_time_ns"]),
            float(bar["high"]),
            float(bar["low"]),
            float(bar["close"]),
            float(bar["volume"]),
            float(bar.get("trade_count", math.nan)),
            float(bar.get("buy_volume", math.nan)),
            float(bar.get("vwap", math.nan)),
        )

    def update_values(
        self,
        open_time_ns: int,
        high: float,
        low: float,
        close: float,
        volume: float,
        trade_count: float = math.nan,
        buy_volume: float = math.nan,
        vwap: float = math.nan,
    ) -> dict[str, float] | None:
        """Fold one closed bar given as values; see :meth:`update`."""
        i = self.n
        self.n += 1
        self.last_open_time_ns = open_time_ns
        logc = math.log(close)
        self._logc.append(logc)
        self._close.append(close)
        self._volume.append(volume)
        if self.spec.uses_trades:
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
        if self.n <= self._warmup:
            return None
        return self._features(open_time_ns, high, low, close, volume, trade_count, buy_volume, vwap)

    def _features(
        self,
        open_time_ns: int,
        high: float,
        low: float,
        close: float,
        volume: float,
        trade_count: float,
        buy_volume: float,
        vwap: float,
    ) -> dict[str, float]:
        f: dict[str, float] = {}
        logc = self._logc
        for k in S.RETURN_LAGS:
            f[f"ret_{k}"] = logc[-1] - logc[-1 - k]
        rets = list(self._ret)
        for n in S.VOL_WINDOWS:
            f[f"vol_{n}"] = _mean_std(rets[-n:], 1)[1]
        f["hl_range"] = math.log(high / low)
        gl = self._gain + self._loss
        f[f"rsi_{S.RSI_PERIOD}"] = 100.0 * self._gain / gl if gl > 0 else 50.0
        f[f"ema_dist_{S.EMA_FAST}"] = close / self._ema_fast - 1.0
        f[f"ema_dist_{S.EMA_SLOW}"] = close / self._ema_slow - 1.0
        closes = list(self._close)
        for n in S.SMA_WINDOWS:
            f[f"sma_dist_{n}"] = close / (sum(closes[-n:]) / n) - 1.0
        macd = self._ema_fast - self._ema_slow
        f["macd"] = macd / close
        f["macd_signal"] = self._signal / close
        f["macd_hist"] = (macd - self._signal) / close
        m, sd = _mean_std(closes[-S.BB_WINDOW :], 0)
        if sd > 0:
            lower = m - S.BB_K * sd
            f[f"bb_pos_{S.BB_WINDOW}"] = (close - lower) / (2.0 * S.BB_K * sd)
            f[f"bb_width_{S.BB_WINDOW}"] = 2.0 * S.BB_K * sd / m
        else:
            f[f"bb_pos_{S.BB_WINDOW}"] = 0.5
            f[f"bb_width_{S.BB_WINDOW}"] = 0.0
        f[f"atr_{S.ATR_PERIOD}"] = self._atr / close
        m, sd = _mean_std(self._volume, 1)
        f[f"volume_z_{S.VOLUME_Z_WINDOW}"] = (volume - m) / sd if sd > 0 else 0.0
        angle = ((open_time_ns // _NS_PER_MINUTE) % 1440) * _TWO_PI_PER_MINUTE
        f["hour_sin"] = math.sin(angle)
        f["hour_cos"] = math.cos(angle)
        if self.spec.uses_trades:
            # a bar without trade columns (a kline in the warm-up) gives NaN: absent, not zero
            f["buy_imbalance"] = (2.0 * buy_volume - volume) / volume if volume > 0 else buy_volume * 0.0
            f["vwap_dist"] = close / vwap - 1.0 if vwap > 0 else (vwap if math.isnan(vwap) else 0.0)
            m, sd = _mean_std(self._count, 1)
            # a window holding a kline without trade count gives NaN (absent), as in the batch
            f[f"trade_count_z_{S.TRADE_COUNT_Z_WINDOW}"] = (trade_count - m) / sd if sd > 0 else sd * 0.0
        return {name: f[name] for name in self.spec.names}


def fold_features(bars: pd.DataFrame, spec: FeatureSpec = FEATURE_SPEC) -> pd.DataFrame:
    """Run :class:`FeatureState` over a bar DataFrame (the stream's numbers, in batch layout)."""
    b = _checked(bars, spec)
    state = FeatureState(spec)
    t = _open_ns(b)
    cols = [b[c].to_numpy(dtype="float64") for c in ("high", "low", "close", "volume")]
    extra = (
        [b[c].to_numpy(dtype="float64") for c in ("trade_count", "buy_volume", "vwap")]
        if spec.uses_trades
        else [np.full(len(b), math.nan)] * 3
    )
    out = np.full((len(b), spec.n_features), math.nan)
    for i in range(len(b)):
        row = state.update_values(
            int(t[i]), cols[0][i], cols[1][i], cols[2][i], cols[3][i], extra[0][i], extra[1][i], extra[2][i]
        )
        if row is not None:
            out[i] = list(row.values())
    return pd.DataFrame(out, index=b.index, columns=list(spec.names))


# --------------------------------------------------------------------------------------------
# batch
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


def _ema(x: FloatArray, alpha: float) -> FloatArray:
    """EMA seeded with x[0]: y_i = (1 - a) y_{i-1} + a x_i (same recurrence as the state)."""
    from scipy.signal import lfilter

    y = np.empty_like(x)
    if len(x) == 0:
        return y
    y[0] = x[0]
    if len(x) > 1:
        y[1:] = lfilter([alpha], [1.0, -(1.0 - alpha)], x[1:], zi=[(1.0 - alpha) * x[0]])[0]
    return y


def _rolling_mean_std(x: FloatArray, n: int, ddof: int) -> tuple[FloatArray, FloatArray]:
    """Rolling mean and std over the last n values (NaN before n values)."""
    mean = np.full(len(x), math.nan)
    std = np.full(len(x), math.nan)
    if len(x) >= n:
        w = sliding_window_view(x, n)
        m = _sequential_sum(w) / n
        dev = w - m[:, None]
        mean[n - 1 :] = m
        std[n - 1 :] = np.sqrt(_sequential_sum(dev * dev) / (n - ddof))
    return mean, std


def _sequential_sum(w: FloatArray) -> FloatArray:
    """Sum each row left to right, as Python's ``sum`` does in the state.

    numpy's own reduction adds in eight interleaved partial sums: a different rounding that,
    divided by a near-zero Bollinger band, shows up above 1e-9. Windows are short (<= 64).
    """
    s = w[:, 0].copy()
    for j in range(1, w.shape[1]):
        s += w[:, j]
    return s


def _zscore(x: FloatArray, n: int) -> FloatArray:
    m, sd = _rolling_mean_std(x, n, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(sd > 0, (x - m) / np.where(sd > 0, sd, 1.0), np.where(np.isnan(sd), math.nan, 0.0))


def compute_features(bars: pd.DataFrame, spec: FeatureSpec = FEATURE_SPEC) -> pd.DataFrame:
    """Compute the spec's features over one symbol's bars (indexed like the bars).

    ``bars``: indexed by UTC open time, columns open/high/low/close/volume and, for a spec that
    uses trades, trade_count/buy_volume/vwap (kline names from ``read_ohlcv_csv`` are mapped).
    A bar whose trade columns are NaN (a kline among ticks bars) gives NaN trade features.
    Each feature is NaN before its own warm-up (``spec.warmup``); rows from
    ``spec.warmup_bars`` on are complete. Bars must be consecutive (no missing buckets) for
    the windows to mean what they say; a gap in the input is taken as adjacency.
    """
    b = _checked(bars, spec)
    n = len(b)
    c = b["close"].to_numpy(dtype="float64")
    h = b["high"].to_numpy(dtype="float64")
    lo = b["low"].to_numpy(dtype="float64")
    v = b["volume"].to_numpy(dtype="float64")
    f: dict[str, FloatArray] = {}
    logc = np.log(c)
    for k in S.RETURN_LAGS:
        r = np.full(n, math.nan)
        r[k:] = logc[k:] - logc[:-k]
        f[f"ret_{k}"] = r
    ret1 = f["ret_1"]
    for w in S.VOL_WINDOWS:
        sd = np.full(n, math.nan)
        sd[1:] = _rolling_mean_std(ret1[1:], w, 1)[1]
        f[f"vol_{w}"] = sd
    f["hl_range"] = np.log(h / lo)
    # Wilder RSI: RMA of gains/losses, seeded with the first change (bar 1)
    change = np.full(n, math.nan)
    change[1:] = c[1:] - c[:-1]
    gain = np.where(change > 0, change, 0.0)
    loss = np.where(change > 0, 0.0, -change)
    ag = np.full(n, math.nan)
    al = np.full(n, math.nan)
    if n > 1:
        ag[1:] = _ema(gain[1:], S.wilder_alpha(S.RSI_PERIOD))
        al[1:] = _ema(loss[1:], S.wilder_alpha(S.RSI_PERIOD))
    gl = ag + al
    with np.errstate(divide="ignore", invalid="ignore"):
        f[f"rsi_{S.RSI_PERIOD}"] = np.where(
            gl > 0, 100.0 * ag / np.where(gl > 0, gl, 1.0), np.where(np.isnan(gl), math.nan, 50.0)
        )
    ema_fast = _ema(c, S.ema_alpha(S.EMA_FAST))
    ema_slow = _ema(c, S.ema_alpha(S.EMA_SLOW))
    f[f"ema_dist_{S.EMA_FAST}"] = c / ema_fast - 1.0
    f[f"ema_dist_{S.EMA_SLOW}"] = c / ema_slow - 1.0
    for w in S.SMA_WINDOWS:
        f[f"sma_dist_{w}"] = c / _rolling_mean_std(c, w, 0)[0] - 1.0
    macd = ema_fast - ema_slow
    signal = np.empty_like(macd)
    if n:
        signal[0] = 0.0
        if n > 1:
            from scipy.signal import lfilter

            a = S.ema_alpha(S.MACD_SIGNAL)
            signal[1:] = lfilter([a], [1.0, -(1.0 - a)], macd[1:], zi=[0.0])[0]
    f["macd"] = macd / c
    f["macd_signal"] = signal / c
    f["macd_hist"] = (macd - signal) / c
    m, sd = _rolling_mean_std(c, S.BB_WINDOW, 0)
    band = 2.0 * S.BB_K * sd
    with np.errstate(divide="ignore", invalid="ignore"):
        pos = np.where(sd > 0, (c - (m - S.BB_K * sd)) / np.where(sd > 0, band, 1.0), 0.5)
        width = np.where(sd > 0, band / m, 0.0)
    nan = np.isnan(sd)
    f[f"bb_pos_{S.BB_WINDOW}"] = np.where(nan, math.nan, pos)
    f[f"bb_width_{S.BB_WINDOW}"] = np.where(nan, math.nan, width)
    tr = h - lo
    if n > 1:
        prev = c[:-1]
        tr[1:] = np.maximum(np.maximum(tr[1:], np.abs(h[1:] - prev)), np.abs(lo[1:] - prev))
    f[f"atr_{S.ATR_PERIOD}"] = _ema(tr, S.wilder_alpha(S.ATR_PERIOD)) / c
    f[f"volume_z_{S.VOLUME_Z_WINDOW}"] = _zscore(v, S.VOLUME_Z_WINDOW)
    angle = ((_open_ns(b) // _NS_PER_MINUTE) % 1440).astype("float64") * _TWO_PI_PER_MINUTE
    f["hour_sin"] = np.sin(angle)
    f["hour_cos"] = np.cos(angle)
    if spec.uses_trades:
        bv = b["buy_volume"].to_numpy(dtype="float64")
        vw = b["vwap"].to_numpy(dtype="float64")
        with np.errstate(divide="ignore", invalid="ignore"):
            f["buy_imbalance"] = np.where(v > 0, (2.0 * bv - v) / np.where(v > 0, v, 1.0), bv * 0.0)
            f["vwap_dist"] = np.where(
                vw > 0, c / np.where(vw > 0, vw, 1.0) - 1.0, np.where(np.isnan(vw), vw, 0.0)
            )
        f[f"trade_count_z_{S.TRADE_COUNT_Z_WINDOW}"] = _zscore(
            b["trade_count"].to_numpy(dtype="float64"), S.TRADE_COUNT_Z_WINDOW
        )
    out = pd.DataFrame({name: f[name] for name in spec.names}, index=b.index)
    for name, w in spec.warmup.items():
        if w:
            out.iloc[:w, out.columns.get_loc(name)] = math.nan
    return out
