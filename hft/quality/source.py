"""Read one partition of market.ticks, market.bars and features.bar_features for validation.

Parameters always go as query parameters; a partition is [start, end) on trade time (ticks),
open time (bars) or event timestamp (features).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import pandas as pd
from psycopg import sql as psql

from hft.config import Settings
from hft.storage import db


def _query(settings: Settings, sql: str, params: Sequence[object]) -> pd.DataFrame:
    with db.connect(settings) as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        names = [d.name for d in cur.description or []]
        return pd.DataFrame(cur.fetchall(), columns=names)


def load_ticks(settings: Settings, symbols: Sequence[str], start: datetime, end: datetime) -> pd.DataFrame:
    """Return ``symbol, trade_id, price, quantity, trade_time_ms`` of the partition's ticks."""
    sql = (
        "SELECT symbol, trade_id, price, quantity, "
        "(extract(epoch FROM trade_time) * 1000)::bigint AS trade_time_ms "
        "FROM market.ticks WHERE symbol = ANY(%s) AND trade_time >= %s AND trade_time < %s"
    )
    df = _query(settings, sql, (list(symbols), start, end))
    return df.astype(
        {
            "symbol": "object",
            "trade_id": "int64",
            "price": "float64",
            "quantity": "float64",
            "trade_time_ms": "int64",
        }
    )


def load_bars(
    settings: Settings, symbols: Sequence[str], interval: str, start: datetime, end: datetime
) -> pd.DataFrame:
    """Return ``symbol, open_time, open, high, low, close, volume`` of the partition's bars."""
    sql = (
        "SELECT symbol, open_time, open, high, low, close, volume FROM market.bars "
        "WHERE symbol = ANY(%s) AND interval = %s AND open_time >= %s AND open_time < %s"
    )
    df = _query(settings, sql, (list(symbols), interval, start, end))
    df["open_time"] = pd.to_datetime(df["open_time"], utc=True)
    return df


def first_bar_times(
    settings: Settings, symbols: Sequence[str], interval: str, source: str | None = None
) -> dict[str, pd.Timestamp]:
    """Return the open time of each symbol's first stored bar (where feature warm-up starts);
    with ``source`` (``ticks``), its first bar of that source (where trade-derived features'
    warm-up starts: kline history carries no trades)."""
    sql = (
        "SELECT symbol, min(open_time) AS first FROM market.bars WHERE symbol = ANY(%s) AND interval = %s "
        "AND (%s::text IS NULL OR source = %s) GROUP BY symbol"
    )
    df = _query(settings, sql, (list(symbols), interval, source, source))
    return {str(r.symbol): pd.Timestamp(r.first).tz_convert("UTC") for r in df.itertuples()}


def load_features(
    settings: Settings,
    symbols: Sequence[str],
    interval: str,
    names: Sequence[str],
    start: datetime,
    end: datetime,
) -> pd.DataFrame:
    """Return ``symbol, event_timestamp, bar_source`` and the named features of bars opened in [start, end)."""
    # the bar's source says whether trade-derived features can exist (klines carry no trades)
    query = psql.SQL(
        "SELECT f.symbol, f.event_timestamp, b.source, {cols} FROM features.bar_features f "
        "LEFT JOIN market.bars b ON b.symbol = f.symbol AND b.interval = f.interval AND b.open_time = f.open_time "
        "WHERE f.symbol = ANY(%s) AND f.interval = %s AND f.open_time >= %s AND f.open_time < %s"
    ).format(cols=psql.SQL(", ").join(psql.SQL("f.") + psql.Identifier(n) for n in names))
    with db.connect(settings) as conn, conn.cursor() as cur:
        cur.execute(query, (list(symbols), interval, start, end))
        rows = cur.fetchall()
    df = pd.DataFrame(rows, columns=["symbol", "event_timestamp", "bar_source", *names])
    df["event_timestamp"] = pd.to_datetime(df["event_timestamp"], utc=True)
    for name in names:
        df[name] = pd.to_numeric(df[name], errors="coerce").astype("float64")
    return df


def tick_span(settings: Settings, symbols: Sequence[str]) -> dict[str, tuple[datetime, datetime]]:
    """Return each symbol's first and last stored trade time (by trade id: the primary key's order)."""
    sql = (
        "SELECT s.symbol, "
        "(SELECT trade_time FROM market.ticks t WHERE t.symbol = s.symbol ORDER BY trade_id LIMIT 1), "
        "(SELECT trade_time FROM market.ticks t WHERE t.symbol = s.symbol ORDER BY trade_id DESC LIMIT 1) "
        "FROM unnest(%s::text[]) AS s(symbol)"
    )
    with db.connect(settings) as conn, conn.cursor() as cur:
        cur.execute(sql, (list(symbols),))
        return {str(sym): (first, last) for sym, first, last in cur.fetchall() if first is not None}


def bar_span(
    settings: Settings, symbols: Sequence[str], interval: str
) -> dict[str, tuple[datetime, datetime]]:
    """Return each symbol's first and last stored bar open time of ``interval``."""
    sql = (
        "SELECT s.symbol, "
        "(SELECT open_time FROM market.bars b WHERE b.symbol = s.symbol AND b.interval = %s "
        "ORDER BY open_time LIMIT 1), "
        "(SELECT open_time FROM market.bars b WHERE b.symbol = s.symbol AND b.interval = %s "
        "ORDER BY open_time DESC LIMIT 1) "
        "FROM unnest(%s::text[]) AS s(symbol)"
    )
    with db.connect(settings) as conn, conn.cursor() as cur:
        cur.execute(sql, (interval, interval, list(symbols)))
        return {str(sym): (first, last) for sym, first, last in cur.fetchall() if first is not None}


def holds_data(
    settings: Settings, symbols: Sequence[str], interval: str, start: datetime, end: datetime
) -> bool:
    """Whether market.ticks or market.bars (of ``interval``) hold any row of ``symbols`` in [start, end)."""
    sql = (
        "SELECT EXISTS (SELECT 1 FROM market.ticks WHERE symbol = ANY(%s) AND trade_time >= %s "
        "AND trade_time < %s) OR EXISTS (SELECT 1 FROM market.bars WHERE symbol = ANY(%s) AND interval = %s "
        "AND open_time >= %s AND open_time < %s)"
    )
    with db.connect(settings) as conn, conn.cursor() as cur:
        cur.execute(sql, (list(symbols), start, end, list(symbols), interval, start, end))
        row = cur.fetchone()
        return bool(row and row[0])
