"""Backfill: offline features from ``market.bars`` with the same code as the stream.

``backfill(settings, symbol, interval, start, end)`` reads the bars with open time in
``[start, end)`` plus the ``warmup_bars`` bars before ``start``, computes the features with
:func:`hft.features.compute_features`, upserts the partition's rows into
``features.bar_features`` (idempotent: a re-run rewrites the same rows) and, with
``materialize``, loads the newest row per symbol of the window into the online store through
Feast's ``materialize``. The Airflow DAG and ``hft features backfill`` call exactly this.

Bars from klines without trade columns give null (absent) trade-derived features.

Training from the store (:mod:`hft.ml.store_frame`) reads the closed bars of its window with
:func:`load_closed_bars` and first calls :func:`backfill_missing`: every closed bar past its
symbol's warm-up that has no row in ``features.bar_features`` is backfilled by :func:`backfill`
(the same code), so Feast's point-in-time join finds each bar's own row.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from hft.config import Settings
from hft.features.bars import BAR_COLUMNS, interval_ns
from hft.features.compute import compute_features
from hft.features.offline import upsert_features
from hft.features.spec import FEATURE_SPEC_FULL, FeatureSpec
from hft.features.store import FEATURE_VIEW, ensure_applied, feature_store
from hft.storage import db

log = logging.getLogger(__name__)

# A bar built from ticks is in market.bars while it is still open (the ingestor rebuilds the
# touched buckets); it is closed once a trade at or after its close time has been stored. Only
# closed bars get features: a row for an open bar would carry numbers that later change.
_BARS_SQL = """
WITH last_tick AS (
    SELECT coalesce((SELECT trade_time FROM market.ticks WHERE symbol = %(symbol)s
                     ORDER BY trade_id DESC LIMIT 1), '-infinity'::timestamptz) AS t
)
SELECT open_time, open, high, low, close, volume, trade_count, buy_volume, quote_volume, vwap FROM (
    (SELECT * FROM market.bars WHERE symbol = %(symbol)s AND interval = %(interval)s AND open_time < %(start)s
     ORDER BY open_time DESC LIMIT %(warmup)s)
    UNION ALL
    (SELECT * FROM market.bars WHERE symbol = %(symbol)s AND interval = %(interval)s
     AND open_time >= %(start)s AND open_time < %(end)s)
) b WHERE b.source = 'kline' OR b.close_time <= (SELECT t FROM last_tick)
ORDER BY open_time
"""


_CLOSED_BARS_SQL = """
WITH last_tick AS (
    SELECT coalesce((SELECT trade_time FROM market.ticks WHERE symbol = %(symbol)s
                     ORDER BY trade_id DESC LIMIT 1), '-infinity'::timestamptz) AS t
)
SELECT open_time, open, high, low, close, volume, trade_count, buy_volume, quote_volume, vwap
FROM market.bars b
WHERE b.symbol = %(symbol)s AND b.interval = %(interval)s
  AND b.open_time >= %(start)s AND b.open_time < %(end)s
  AND (b.source = 'kline' OR b.close_time <= (SELECT t FROM last_tick))
ORDER BY open_time
"""

# Closed bars past the symbol's warm-up (the first `warmup` stored bars never get a row) whose
# close has no row in the offline table; `i` is the bar's position among the symbol's bars.
_MISSING_SQL = """
WITH last_tick AS (
    SELECT coalesce((SELECT trade_time FROM market.ticks WHERE symbol = %(symbol)s
                     ORDER BY trade_id DESC LIMIT 1), '-infinity'::timestamptz) AS t
), b AS (
    SELECT open_time, close_time, source, row_number() OVER (ORDER BY open_time) - 1 AS i
    FROM market.bars WHERE symbol = %(symbol)s AND interval = %(interval)s
)
SELECT b.open_time, b.i FROM b
WHERE b.i >= %(warmup)s AND b.open_time >= %(start)s AND b.open_time < %(end)s
  AND (b.source = 'kline' OR b.close_time <= (SELECT t FROM last_tick))
  AND NOT EXISTS (SELECT 1 FROM features.bar_features f WHERE f.symbol = %(symbol)s
                  AND f.interval = %(interval)s AND f.event_timestamp = b.close_time)
ORDER BY b.open_time
"""

_FAR_PAST = datetime.fromisoformat("1970-01-01T00:00:00+00:00")
_FAR_FUTURE = datetime.fromisoformat("9999-01-01T00:00:00+00:00")


def bars_frame(rows: list[tuple[Any, ...]]) -> pd.DataFrame:
    """Turn market.bars rows (open_time + BAR_COLUMNS) into the feature layout, NULL -> NaN.

    A kline bar without trades (volume 0) has no VWAP in the table; as in the bar builder its
    VWAP is its close.
    """
    df = pd.DataFrame(rows, columns=["open_time", *BAR_COLUMNS])
    df["open_time"] = pd.to_datetime(df["open_time"], utc=True)
    df = df.set_index("open_time")
    df = df.astype(dict.fromkeys(BAR_COLUMNS, "float64"))
    empty = (df["volume"] == 0) & df["vwap"].isna() & df["quote_volume"].notna()
    df.loc[empty, "vwap"] = df.loc[empty, "close"]
    return df


def load_bars(
    conn: Any, symbol: str, interval: str, start: datetime, end: datetime, warmup: int
) -> pd.DataFrame:
    """Bars with open time in [start, end) and the ``warmup`` bars before start."""
    with conn.cursor() as cur:
        cur.execute(
            _BARS_SQL, {"symbol": symbol, "interval": interval, "start": start, "end": end, "warmup": warmup}
        )
        return bars_frame(cur.fetchall())


def load_closed_bars(
    conn: Any, symbol: str, interval: str, start: datetime | None = None, end: datetime | None = None
) -> pd.DataFrame:
    """Closed bars with open time in [start, end), by the backfill's rule (a ticks bar is closed
    once a trade at or after its close is stored); no warm-up bars before ``start``."""
    params = {
        "symbol": symbol,
        "interval": interval,
        "start": start or _FAR_PAST,
        "end": end or _FAR_FUTURE,
    }
    with conn.cursor() as cur:
        cur.execute(_CLOSED_BARS_SQL, params)
        return bars_frame(cur.fetchall())


def missing_feature_runs(
    conn: Any,
    symbol: str,
    interval: str,
    start: datetime | None = None,
    end: datetime | None = None,
    warmup: int = FEATURE_SPEC_FULL.warmup_bars,
) -> list[tuple[datetime, datetime]]:
    """Windows ``[first open, last open + interval)`` covering the closed bars of [start, end) that
    lack an offline feature row (bars inside the symbol's warm-up excepted).

    Missing bars closer than ``warmup`` stored bars to each other share one window: a backfill
    reads ``warmup`` bars before its window anyway, so rewriting the rows between is cheaper than
    a second read.
    """
    params = {
        "symbol": symbol,
        "interval": interval,
        "start": start or _FAR_PAST,
        "end": end or _FAR_FUTURE,
        "warmup": warmup,
    }
    with conn.cursor() as cur:
        cur.execute(_MISSING_SQL, params)
        rows = cur.fetchall()
    step = pd.Timedelta(interval_ns(interval), unit="ns").to_pytimedelta()
    runs: list[tuple[datetime, datetime]] = []
    first = last = None
    last_i = -(10**18)
    for open_time, i in rows:
        if first is not None and last is not None and i - last_i >= warmup:
            runs.append((first, last + step))
            first = None
        if first is None:
            first = open_time
        last, last_i = open_time, i
    if first is not None and last is not None:
        runs.append((first, last + step))
    return runs


def backfill_missing(
    settings: Settings, symbol: str, interval: str, start: datetime | None = None, end: datetime | None = None
) -> int:
    """Backfill (no materialize) every closed bar of [start, end) without an offline row; return
    the rows upserted (0 when nothing was missing)."""
    with db.connect(settings) as conn:
        runs = missing_feature_runs(conn, symbol, interval, start, end)
    n = 0
    for lo, hi in runs:
        n += backfill(settings, symbol, interval, lo, hi, materialize=False)
    if runs:
        log.info("backfilled %d feature rows of %s %s in %d window(s)", n, symbol, interval, len(runs))
    return n


def features_for_window(
    bars: pd.DataFrame, start: datetime, end: datetime, spec: FeatureSpec = FEATURE_SPEC_FULL
) -> pd.DataFrame:
    """Features of the bars with open time in [start, end) whose OHLCV part is past warm-up."""
    feats = compute_features(bars, spec)
    complete = np.arange(len(feats)) >= spec.warmup_bars
    idx = pd.DatetimeIndex(feats.index)
    in_window = (idx >= pd.Timestamp(start)) & (idx < pd.Timestamp(end))
    return feats[complete & in_window]


def backfill(
    settings: Settings, symbol: str, interval: str, start: datetime, end: datetime, materialize: bool = True
) -> int:
    """Compute and upsert the offline features of one partition; return the rows upserted."""
    spec = FEATURE_SPEC_FULL
    with db.connect(settings) as conn:
        bars = load_bars(conn, symbol, interval, start, end, spec.warmup_bars)
        feats = features_for_window(bars, start, end, spec)
        n = upsert_features(conn, symbol, interval, feats, spec.version)
    log.info(
        "backfill %s %s [%s, %s): %d bars read, %d feature rows upserted",
        symbol,
        interval,
        start,
        end,
        len(bars),
        n,
    )
    if materialize and n:
        ensure_applied(settings)
        step = pd.Timedelta(interval_ns(interval), unit="ns").to_pytimedelta()
        feature_store(settings).materialize(
            start_date=start, end_date=end + step, feature_views=[FEATURE_VIEW]
        )
    return n
