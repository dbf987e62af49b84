"""The offline feature table ``features.bar_features``: idempotent upserts and reads.

One row per (symbol, interval, event_timestamp = bar close time). Upserts go through COPY into
a temporary staging table and one ``INSERT ... ON CONFLICT DO UPDATE``, so a re-run of a
backfill partition or a replayed bar rewrites the same rows instead of duplicating them.
Values travel as parameters (COPY), never as SQL text. NaN is stored as NULL (absent).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from hft.features.bars import interval_ns
from hft.features.spec import ALL_FEATURES

_STAGING = (
    "CREATE TEMP TABLE IF NOT EXISTS bar_features_staging (LIKE features.bar_features INCLUDING DEFAULTS) "
    "ON COMMIT DELETE ROWS"
)
_COLS = ("symbol", "interval", "event_timestamp", "open_time", "feature_version", *ALL_FEATURES)
_UPSERT = f"""
INSERT INTO features.bar_features ({", ".join(_COLS)}, created)
SELECT {", ".join(_COLS)}, now() FROM bar_features_staging
ON CONFLICT (symbol, interval, event_timestamp) DO UPDATE SET
    {", ".join(f"{c} = excluded.{c}" for c in ("open_time", "feature_version", *ALL_FEATURES))}, created = now()
"""
_COPY = f"COPY bar_features_staging ({', '.join(_COLS)}) FROM STDIN"


def _cell(v: Any) -> Any:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


FeatureRow = tuple[str, str, datetime, datetime, Mapping[str, float] | None]
"""(symbol, interval, open time, close time = event timestamp, {feature: value}) of one bar."""


def upsert_features(conn: Any, symbol: str, interval: str, features: pd.DataFrame, version: str) -> int:
    """Upsert feature rows (indexed by bar open time) into features.bar_features; commit; return rows.

    Columns of ``ALL_FEATURES`` missing from ``features`` are stored as NULL.
    """
    if features.empty:
        return 0
    step = pd.Timedelta(interval_ns(interval), unit="ns")
    opens = pd.DatetimeIndex(features.index)
    closes = opens + step
    cols = {
        c: (
            features[c].to_numpy(dtype="float64") if c in features.columns else np.full(len(features), np.nan)
        )
        for c in ALL_FEATURES
    }
    cells = (
        (
            symbol,
            interval,
            closes[i].to_pydatetime(),
            opens[i].to_pydatetime(),
            version,
            *(_cell(cols[c][i]) for c in ALL_FEATURES),
        )
        for i in range(len(features))
    )
    return _copy_upsert(conn, cells)


def upsert_feature_rows(conn: Any, rows: Iterable[FeatureRow], version: str) -> int:
    """Upsert bars' feature dicts (the stream's closed bars: no DataFrame on the way); commit; return rows.

    Features missing from a dict, or NaN, are stored as NULL.
    """
    cells = (
        (symbol, interval, close, open_, version, *(_cell((feats or {}).get(c)) for c in ALL_FEATURES))
        for symbol, interval, open_, close, feats in rows
    )
    return _copy_upsert(conn, cells)


def _copy_upsert(conn: Any, cells: Iterable[tuple[Any, ...]]) -> int:
    with conn.cursor() as cur:
        cur.execute(_STAGING)
        with cur.copy(_COPY) as cp:
            for row in cells:
                cp.write_row(row)
        cur.execute(_UPSERT)
        n = int(max(cur.rowcount, 0))
    conn.commit()
    return n


def read_features(
    conn: Any, symbol: str, interval: str, start: datetime | None = None, end: datetime | None = None
) -> pd.DataFrame:
    """Feature rows of one symbol and interval with event_timestamp in [start, end), indexed by open time."""
    sql = (
        f"SELECT open_time, event_timestamp, feature_version, {', '.join(ALL_FEATURES)} FROM features.bar_features "
        "WHERE symbol = %s AND interval = %s AND event_timestamp >= %s AND event_timestamp < %s "
        "ORDER BY event_timestamp"
    )
    lo = start or datetime.fromisoformat("1970-01-01T00:00:00+00:00")
    hi = end or datetime.fromisoformat("9999-01-01T00:00:00+00:00")
    with conn.cursor() as cur:
        cur.execute(sql, (symbol, interval, lo, hi))
        rows = cur.fetchall()
    df = pd.DataFrame(rows, columns=["open_time", "event_timestamp", "feature_version", *ALL_FEATURES])
    df["open_time"] = pd.to_datetime(df["open_time"], utc=True)
    df["event_timestamp"] = pd.to_datetime(df["event_timestamp"], utc=True)
    df[list(ALL_FEATURES)] = df[list(ALL_FEATURES)].astype("float64")
    return df.set_index("open_time")
