"""The former vectorised twin of :class:`hft.features.FeatureState` (bar_features v1), kept as a test oracle.

Until issue 22 every v1 feature existed twice, this numpy version being the batch path. The batch
now folds the incremental state (one implementation); this independent vectorised computation
stays here only to check the formulas on real data (``test_parity.py``).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import NDArray

from hft.features import spec as S
from hft.features.bars import has_trade_columns, normalize_bars
from hft.features.spec import FEATURE_SPEC, FeatureSpec

_TWO_PI_PER_MINUTE = 2.0 * math.pi / 1440.0
_NS_PER_MINUTE = 60_000_000_000

FloatArray = NDArray[np.float64]


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


def reference_features(bars: pd.DataFrame, spec: FeatureSpec = FEATURE_SPEC) -> pd.DataFrame:
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


def reference_v2_features(bars: pd.DataFrame, batch_vol_16: pd.Series | None = None) -> pd.DataFrame:
    """bar_features_ohlcv_v2's own features, written independently with pandas rolling windows.

    ``batch_vol_16``: the fold's ``vol_16`` (itself checked against :func:`reference_features`),
    ranked here for ``vol_pct_672`` so that near-ties of two std computations do not move ranks.
    Each column is NaN before its warm-up (``spec.warmup``).
    """
    b = normalize_bars(bars)
    o, h, lo, c, v = (b[k].astype("float64") for k in ("open", "high", "low", "close", "volume"))
    logc = np.log(c)
    ret1 = logc.diff()
    out: dict[str, pd.Series] = {}
    for k in S.RETURN_LAGS_V2:
        out[f"ret_{k}"] = logc.diff(k)
    vol_long = ret1.rolling(S.LONG_VOL_WINDOW).std()
    out[f"vol_{S.LONG_VOL_WINDOW}"] = vol_long
    vol16 = ret1.rolling(S.VOL_WINDOWS[0]).std()
    out[f"vol_ratio_{S.VOL_WINDOWS[0]}_{S.LONG_VOL_WINDOW}"] = vol16 / vol_long
    hl = np.log(h / lo)
    oc = np.log(c / o)
    for n in S.RANGE_VOL_WINDOWS:
        out[f"pk_vol_{n}"] = np.sqrt((hl**2 / (4 * math.log(2))).rolling(n).mean())
    for n in S.RANGE_VOL_WINDOWS:
        gk = 0.5 * hl**2 - (2 * math.log(2) - 1) * oc**2
        out[f"gk_vol_{n}"] = np.sqrt(gk.rolling(n).mean().clip(lower=0))
    out["body"] = oc
    out["upper_wick"] = np.log(h / np.maximum(o, c))
    out["lower_wick"] = np.log(np.minimum(o, c) / lo)
    out["close_pos"] = ((c - lo) / (h - lo)).where(h > lo, 0.5)
    out["gap"] = np.log(o / c.shift(1))
    n = S.RANGE_WINDOW
    out[f"range_z_{n}"] = (hl - hl.rolling(n).mean()) / hl.rolling(n).std()
    top, bottom = h.rolling(n).max(), lo.rolling(n).min()
    out[f"range_pos_{n}"] = ((c - bottom) / (top - bottom)).where(top > bottom, 0.5)
    out[f"volume_z_{n}"] = (v - v.rolling(n).mean()) / v.rolling(n).std()
    out[f"volume_ratio_{S.VOLUME_RATIO_SHORT}_{n}"] = (
        v.rolling(S.VOLUME_RATIO_SHORT).mean() / v.rolling(n).mean()
    )
    idx = pd.DatetimeIndex(b.index)
    minute = idx.dayofweek * 1440 + idx.hour * 60 + idx.minute
    out["dow_sin"] = pd.Series(np.sin(2 * math.pi * minute / 10080), index=b.index)
    out["dow_cos"] = pd.Series(np.cos(2 * math.pi * minute / 10080), index=b.index)
    up, down = h.diff(), -lo.diff()
    pdm = up.where((up > down) & (up > 0), 0.0).iloc[1:]
    mdm = down.where((down > up) & (down > 0), 0.0).iloc[1:]
    a = 1.0 / S.ADX_PERIOD
    ps, ms = pdm.ewm(alpha=a, adjust=False).mean(), mdm.ewm(alpha=a, adjust=False).mean()
    dmi = ((ps - ms) / (ps + ms)).where(ps + ms > 0, 0.0)
    out[f"dmi_{S.ADX_PERIOD}"] = dmi.reindex(b.index)
    out[f"adx_{S.ADX_PERIOD}"] = (100 * dmi.abs()).ewm(alpha=a, adjust=False).mean().reindex(b.index)
    t = S.TREND_WINDOW
    out[f"trend_ratio_{t}"] = logc.diff(t) / (ret1.rolling(t).std() * math.sqrt(t))
    e = S.EFFICIENCY_WINDOW
    out[f"eff_ratio_{e}"] = logc.diff(e).abs() / ret1.abs().rolling(e).sum()
    v16 = vol16 if batch_vol_16 is None else batch_vol_16
    out[f"vol_pct_{S.VOL_PCT_WINDOW}"] = v16.rolling(S.VOL_PCT_WINDOW).rank(method="max", pct=True)
    frame = pd.DataFrame(out)[list(S.OHLCV_V2_FEATURES)]
    for name in frame.columns:
        frame.iloc[: S.WARMUP[name], frame.columns.get_loc(name)] = math.nan
    return frame
