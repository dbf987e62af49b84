"""Training from the store: bars from ``market.bars``, features through Feast's offline store.

What ``hft train`` without ``--data`` and the ``retrain_models`` DAG without ``data`` run:

1. the window's bars that lack an offline feature row are backfilled first
   (:func:`hft.features.backfill.backfill_missing`: the backfill's own code,
   :func:`hft.features.compute_features`);
2. the closed bars of the window are read from ``market.bars`` (klines loaded as history and
   bars the tick ingestor built from live trades; a ticks bar counts once a later trade is
   stored) — they give the labels, the forward returns and the persistence baseline;
3. the features come from ``FeatureStore.get_historical_features`` with the model's
   FeatureService (``bar_features_ohlcv_v1`` by default), one entity row per symbol and
   decision time (the bar's close): Feast's point-in-time join hands each row the newest
   feature row with ``event_timestamp`` at or before it, i.e. the features of that bar,
   computed from bars closed at or before it;
4. :func:`hft.ml.dataset.build_dataset` assembles the rows exactly as for a CSV (same
   warm-up rule: rows with a complete vector; same labels, same runs).

For the same bars this gives the frame the CSV path gives (same rows, same columns, values
equal to float tolerance: the backfill computes a window from its 524 warm-up bars, the CSV path
from the file's first bar, and after warm-up a feature no longer depends on where it started).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime

import numpy as np
import pandas as pd

from hft.config import ConfigurationError, Settings
from hft.ml.dataset import Dataset, FeatureSet, default_feature_set, interval_timedelta
from hft.ml.store_bars import read_store_bars

log = logging.getLogger(__name__)


@dataclass
class StoreInputs:
    """What :func:`hft.ml.train.train` takes for a store run: bars and a feature set that looks up."""

    bars: dict[str, pd.DataFrame]
    features: FeatureSet  # ``lookup`` returns the Feast rows of a symbol's bars
    store_features: dict[str, pd.DataFrame]  # per symbol, indexed by bar open time
    backfilled: dict[str, int]  # feature rows written first, per symbol


def _ts(value: str | None) -> pd.Timestamp | None:
    if not value:
        return None
    t = pd.Timestamp(value)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def decision_window(start: str | None, end: str | None) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    """The decision times a run keeps, as :func:`hft.ml.train.train` reads ``start``/``end``:
    bars opening at or after ``start``; decisions at or before ``end`` (a date: through that day)."""
    lo, hi = _ts(start), _ts(end)
    if hi is not None and end is not None and len(str(end)) <= 10:
        hi = hi + pd.Timedelta(days=1)
    return lo, hi


def _py(t: pd.Timestamp | None) -> datetime | None:
    return None if t is None else t.to_pydatetime()


def store_features(
    settings: Settings, bars_by_symbol: dict[str, pd.DataFrame], interval: str, service: str
) -> dict[str, pd.DataFrame]:
    """Feast's point-in-time features of every bar (entity row = symbol, bar close), by symbol,
    indexed by the bar's open time; NaN where the store has no row (a symbol's warm-up)."""
    from hft.features.store import ENTITY, historical_features

    step = interval_timedelta(interval)
    rows = pd.concat(
        [
            pd.DataFrame({ENTITY: sym, "event_timestamp": pd.DatetimeIndex(b.index) + step})
            for sym, b in bars_by_symbol.items()
        ],
        ignore_index=True,
    )
    got = historical_features(settings, service, rows)
    names = [c for c in got.columns if c not in (ENTITY, "event_timestamp")]
    out = {}
    for sym, part in got.groupby(ENTITY, sort=False):
        frame = part.set_index(pd.DatetimeIndex(part["event_timestamp"]) - step)[names]
        frame.index.name = "open_time"
        out[str(sym)] = frame
    return out


def store_inputs(
    settings: Settings,
    symbols: list[str],
    interval: str,
    start: str | None,
    end: str | None,
    features: FeatureSet | None = None,
    horizon: int | None = None,
) -> StoreInputs:
    """Backfill what is missing, then read bars and Feast features for a training window.

    ``start``/``end`` are read as :func:`hft.ml.train.train` reads them. Bars are read ``horizon``
    bars beyond both ends (the first row's past move, the last row's label), as a CSV's
    neighbouring rows would serve.
    """
    from hft.features.backfill import backfill_missing

    features = features or default_feature_set()
    if interval != settings.bar_interval:
        raise ConfigurationError(
            f"the feature store holds {settings.bar_interval} bars (HFT_BAR_INTERVAL); train from the "
            f"store at that interval or pass --data <OHLCV CSV> for {interval}"
        )
    if not symbols:
        raise ConfigurationError("no symbols to train on")
    step = interval_timedelta(interval)
    h = max(1, settings.label_horizon if horizon is None else horizon)
    lo, hi = decision_window(start, end)
    backfilled = {sym: backfill_missing(settings, sym, interval, _py(lo), _py(hi)) for sym in symbols}
    bars = read_store_bars(
        settings,
        symbols,
        interval,
        None if lo is None else lo - h * step,
        None if hi is None else hi + h * step,
    )
    feats = store_features(settings, bars, interval, features.version)

    def lookup(symbol: str, b: pd.DataFrame) -> pd.DataFrame:
        return feats[symbol].reindex(b.index)

    log.info(
        "store frame %s %s [%s, %s]: %s bars, %s backfilled first",
        "+".join(symbols),
        interval,
        start,
        end,
        {s: len(b) for s, b in bars.items()},
        backfilled,
    )
    return StoreInputs(
        bars=bars, features=replace(features, lookup=lookup), store_features=feats, backfilled=backfilled
    )


def training_frame(ds: Dataset) -> pd.DataFrame:
    """A dataset as one table: symbol, decision time, the feature vector, label and the rest.

    What two sources are compared by (the store and a CSV give equal frames for equal bars).
    """
    frame = pd.DataFrame(ds.X.astype(np.float64), columns=list(ds.feature_names))
    frame.insert(0, "decision_time", pd.to_datetime(ds.times, utc=True))
    frame.insert(0, "symbol", ds.symbols.astype(str))
    frame["label"] = ds.y
    frame["fwd_ret"] = ds.fwd_ret
    frame["prev_dir"] = ds.prev_dir
    frame["run_start"] = ds.run_start
    return frame
