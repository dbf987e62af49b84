"""Datasets for training and evaluation: features of closed bars, labels, and what the backtest needs.

Features come from :mod:`hft.features` (the one feature implementation); this module never computes
an indicator itself. Rows are the bars of one or more symbols; a row's decision time is its bar's
close time, and everything in the row is known at that time except the label and the forward return.

Two sources of the same frame: an OHLCV CSV (features computed here by
:func:`hft.features.compute_features`, the function the backfill runs), or the store
(``data="store"``: bars from ``market.bars``, features from Feast's offline store, see
:mod:`hft.ml.store_frame`). Either way :func:`build_dataset` assembles the rows and labels.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from hft.config import ConfigurationError, get_settings
from hft.features import compute_features, get_spec
from hft.market.ohlcv import read_ohlcv_csv, symbol_from_filename
from hft.ml.labels import forward_return, make_labels
from hft.ml.store_bars import read_store_bars

FeatureFn = Callable[[pd.DataFrame], pd.DataFrame]
FeatureLookup = Callable[[str, pd.DataFrame], pd.DataFrame]

# ``data`` value meaning "the database": bars from market.bars, features through Feast
STORE_DATA = "store"


def is_store(data: str | Path | None) -> bool:
    """Whether ``data`` names the store (``store``) rather than an OHLCV CSV file or folder."""
    return data is not None and str(data) == STORE_DATA


@dataclass(frozen=True)
class FeatureSet:
    """What a model is trained on: the feature function, the ordered names and the spec version."""

    names: tuple[str, ...]
    version: str
    warmup_bars: int
    compute: FeatureFn = field(repr=False, compare=False)
    baseline_names: tuple[str, ...] = ()  # the simple OHLCV subset for the plain LightGBM baseline
    # features already computed (the store's), by symbol and bars; None: ``compute`` the bars
    lookup: FeatureLookup | None = field(default=None, repr=False, compare=False)

    def features_of(self, symbol: str, bars: pd.DataFrame) -> pd.DataFrame:
        """The feature rows of one symbol's bars (indexed like them, columns ``names``)."""
        feats = self.lookup(symbol, bars) if self.lookup is not None else self.compute(bars)
        return feats if list(feats.columns) == list(self.names) else feats[list(self.names)]


# The plain baseline: returns, volatility, RSI, MACD, ranges, volume z-score, hour.
_BASELINE_PREFIXES = ("ret_", "vol_", "rsi_", "macd", "hl_range", "volume_z_", "hour_")


def default_feature_set(version: str | None = None) -> FeatureSet:
    """Return a feature set of :mod:`hft.features`: by default settings.feature_spec (HFT_FEATURE_SPEC, OHLCV v1)."""
    spec = get_spec(version or get_settings().feature_spec)
    names = tuple(spec.names)

    def _compute(bars: pd.DataFrame) -> pd.DataFrame:
        return compute_features(bars, spec)[list(names)]

    baseline = tuple(n for n in names if n.startswith(_BASELINE_PREFIXES))
    return FeatureSet(
        names=names,
        version=spec.version,
        warmup_bars=spec.warmup_bars,
        compute=_compute,
        baseline_names=baseline,
    )


@dataclass
class Dataset:
    """Rows with complete features, ordered by symbol then decision time.

    ``y`` is NaN where the label is unknown (end of data, gaps, dead zone); such rows still serve
    as history for the LSTM's windows but are never trained or scored on.
    """

    X: np.ndarray  # float32 (n, k)
    y: np.ndarray  # float64, 1.0 up / 0.0 down / NaN unknown
    times: np.ndarray  # int64 ns, decision time = bar close time
    symbols: np.ndarray  # str
    fwd_ret: np.ndarray  # float64, the return a position opened at t realises (close[t+h]/close[t]-1,
    # or for barrier labels the return where the first barrier is touched): the backtest's return
    prev_dir: np.ndarray  # float64, 1.0 if the last h-bar move was up (persistence baseline)
    run_start: np.ndarray  # int64, first row of this row's contiguous run (same symbol, no gap)
    feature_names: tuple[str, ...]
    feature_version: str
    interval: str
    horizon: int
    baseline_names: tuple[str, ...] = ()
    label_kind: str = "direction"  # hft.ml.labels.LABEL_KINDS
    label_params: dict[str, float] = field(default_factory=dict)  # barrier_k, barrier_min_bps
    # the return of a position opened at t and closed at t + h (close[t+h]/close[t]-1): what the bot's
    # book realises (its time exit, hft.trading.strategy.lifecycle_step); None: ``fwd_ret`` is that
    # already (direction labels); barrier labels' ``fwd_ret`` is the return at the barrier instead
    hold_ret: np.ndarray | None = None

    @property
    def exit_ret(self) -> np.ndarray:
        """The return the backtest's book realises per decision: held ``horizon`` bars, then closed."""
        return self.fwd_ret if self.hold_ret is None else self.hold_ret

    def __len__(self) -> int:
        return len(self.y)

    def labeled(self) -> np.ndarray:
        """Positions of rows with a known label."""
        return np.flatnonzero(~np.isnan(self.y))

    def window_ok(self, seq_len: int) -> np.ndarray:
        """Whether each row has ``seq_len`` contiguous rows of history (itself included)."""
        return np.asarray((np.arange(len(self.y)) - self.run_start) >= seq_len - 1)

    def subset_names(self, names: tuple[str, ...]) -> np.ndarray:
        """Columns of X for the given feature names."""
        pos = {n: i for i, n in enumerate(self.feature_names)}
        return np.array([pos[n] for n in names if n in pos], dtype=np.int64)


def interval_timedelta(interval: str) -> pd.Timedelta:
    """Parse Binance interval strings (1m, 15m, 1h, 1d)."""
    units = {"m": "min", "h": "h", "d": "D"}
    if not interval or interval[-1] not in units or not interval[:-1].isdigit():
        raise ConfigurationError(f"unsupported interval {interval!r}")
    return pd.Timedelta(int(interval[:-1]), unit=units[interval[-1]])


def build_dataset(
    bars_by_symbol: Mapping[str, pd.DataFrame],
    features: FeatureSet,
    interval: str,
    horizon: int = 1,
    dead_zone_bps: float = 0.0,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
    label_kind: str = "direction",
    barrier_k: float = 1.0,
    barrier_min_bps: float = 0.0,
) -> Dataset:
    """Compute features and labels per symbol and stack the rows.

    Bars before ``start`` serve only as warm-up (their rows are dropped after the features are
    computed); rows whose decision time is after ``end`` are dropped. ``bars`` are indexed by
    open time; the decision time of a row is its bar's close (open + interval). ``label_kind``
    ``direction`` or ``barrier`` (:func:`hft.ml.labels.make_labels`; barrier width
    max(``barrier_k`` x vol x sqrt(h), ``barrier_min_bps``)).
    """
    step = interval_timedelta(interval)
    parts: list[dict[str, np.ndarray]] = []
    offset = 0
    for symbol, bars in sorted(bars_by_symbol.items()):
        bars = bars.sort_index()
        feats = features.features_of(symbol, bars)
        close = bars["close"].astype("float64")
        label, fwd = make_labels(close, horizon, label_kind, dead_zone_bps, step, barrier_k, barrier_min_bps)
        held = forward_return(close, horizon, step) if label_kind != "direction" else fwd
        past = close / close.shift(horizon) - 1.0
        decision = bars.index + step
        keep = feats.notna().all(axis=1).to_numpy()
        if start is not None:
            keep &= np.asarray(bars.index >= start)
        if end is not None:
            keep &= np.asarray(decision <= end)
        idx = np.flatnonzero(keep)
        if len(idx) == 0:
            continue
        times = np.asarray(decision[idx].asi8, dtype=np.int64)
        # a new run starts at the first row and wherever rows are not exactly one interval apart
        breaks = np.ones(len(idx), dtype=bool)
        breaks[1:] = np.diff(times) != step.value
        run_first = np.maximum.accumulate(np.where(breaks, np.arange(len(idx)), 0)) + offset
        parts.append(
            {
                "X": feats.to_numpy(dtype=np.float32)[idx],
                "y": label.to_numpy()[idx],
                "times": times,
                "symbols": np.full(len(idx), symbol, dtype=object),
                "fwd": fwd.to_numpy()[idx],
                "held": held.to_numpy()[idx],
                "prev": np.where(past.to_numpy()[idx] > 0, 1.0, 0.0),
                "run": run_first.astype(np.int64),
            }
        )
        offset += len(idx)
    if not parts:
        raise ConfigurationError("no rows with complete features in the requested range")
    cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return Dataset(
        X=cat["X"],
        y=cat["y"].astype(np.float64),
        times=cat["times"],
        symbols=cat["symbols"],
        fwd_ret=cat["fwd"].astype(np.float64),
        prev_dir=cat["prev"],
        run_start=cat["run"],
        feature_names=features.names,
        feature_version=features.version,
        interval=interval,
        horizon=horizon,
        baseline_names=features.baseline_names,
        label_kind=label_kind,
        label_params={"barrier_k": barrier_k, "barrier_min_bps": barrier_min_bps}
        if label_kind == "barrier"
        else {},
        hold_ret=None if label_kind == "direction" else cat["held"].astype(np.float64),
    )


def load_bars(data: str | Path, symbols: list[str], interval: str) -> dict[str, pd.DataFrame]:
    """Read bars for each symbol from an OHLCV CSV file or a directory of them.

    A file serves the one symbol asked for (or the symbol in its name); a directory is searched
    for ``{SYMBOL}_{interval}_*.csv[.gz]`` (the layout of ``shared/data/binance/klines_*``).
    ``data="store"`` reads the closed bars of ``market.bars`` (what a store-trained model's
    ``data`` tag says, so the promotion gate re-scores the champion on the same bars).
    """
    if is_store(data):
        return read_store_bars(get_settings(), symbols, interval)
    text = str(data)
    if text.startswith(("http://", "https://", "file://")):
        raise ConfigurationError(
            "archive URLs are read by hft.market's archive reader; download the klines first "
            "or pass a CSV file or directory"
        )
    path = Path(text).expanduser()
    if path.is_dir():
        out = {}
        for sym in symbols:
            found = sorted(path.glob(f"{sym}_{interval}_*.csv*")) or sorted(
                path.glob(f"*/{sym}_{interval}_*.csv*")
            )
            # prefer the longest history when several files exist (ohlcv over klines excerpts)
            found.sort(key=lambda p: p.stat().st_size, reverse=True)
            if not found:
                raise ConfigurationError(f"no {sym} {interval} OHLCV CSV under {path}")
            out[sym] = read_ohlcv_csv(found[0], symbol=sym)
        return out
    if not path.exists():
        raise ConfigurationError(f"data not found: {path}")
    guessed = symbol_from_filename(path)
    if len(symbols) > 1:
        raise ConfigurationError(
            f"{path} is one file but {len(symbols)} symbols were asked for; pass a directory"
        )
    sym = symbols[0] if symbols else (guessed or "UNKNOWN")
    if guessed and symbols and guessed != symbols[0]:
        raise ConfigurationError(f"{path} holds {guessed}, not {symbols[0]}")
    return {sym: read_ohlcv_csv(path, symbol=sym)}
