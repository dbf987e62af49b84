"""Backfill: offline features from ``market.bars`` with the same code as the stream.

``backfill(settings, symbol, interval, start, end)`` reads the bars with open time in
``[start, end)`` plus the ``warmup_bars`` bars before ``start``, computes the features with
:func:`hft.features.compute_features`, upserts the partition's rows into
``features.bar_features`` (idempotent: a re-run rewrites the same rows) and, with
``materialize``, loads the newest row per symbol of the window into the online store through
Feast's ``materialize``. The Airflow DAG and ``hft features backfill`` call exactly this.

Bars from klines without trade columns give null (absent) trade-derived features.
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
