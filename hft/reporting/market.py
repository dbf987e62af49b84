"""The Market page: price per symbol with the bot's signals and fills, and the latest features."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import pandas as pd
from sqlalchemy import text

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine


def _read(engine: Engine, sql: str, params: dict[str, Any] | None = None) -> pd.DataFrame:
    with engine.connect() as conn:
        return pd.read_sql(text(sql), conn, params=params or {})


def price_ticks(engine: Engine, symbol: str, minutes: float = 30.0, limit: int = 200_000) -> pd.DataFrame:
    """Trades of a symbol in the ``minutes`` before its latest one (trade time, price), oldest first."""
    return _read(
        engine,
        """
        WITH last AS (SELECT max(trade_time) AS t FROM market.ticks WHERE symbol = :s)
        SELECT trade_time, price, quantity FROM market.ticks, last
        WHERE symbol = :s AND trade_time >= last.t - make_interval(secs => :secs)
        ORDER BY trade_time, trade_id LIMIT :n""",
        {"s": symbol, "secs": minutes * 60.0, "n": limit},
    )


def price_bars(engine: Engine, symbol: str, interval: str | None = None, limit: int = 500) -> pd.DataFrame:
    """The last ``limit`` bars of a symbol at ``interval`` (the finest stored when None), oldest first."""
    if interval is None:
        iv = _read(
            engine,
            "SELECT interval FROM market.bars WHERE symbol = :s GROUP BY interval "
            "ORDER BY min(close_time - open_time) LIMIT 1",
            {"s": symbol},
        )
        if iv.empty:
            return pd.DataFrame(columns=["open_time", "close_time", "open", "high", "low", "close", "volume"])
        interval = str(iv["interval"].iloc[0])
    df = _read(
        engine,
        "SELECT interval, open_time, close_time, open, high, low, close, volume FROM market.bars "
        "WHERE symbol = :s AND interval = :i ORDER BY open_time DESC LIMIT :n",
        {"s": symbol, "i": interval, "n": limit},
    )
    return df.iloc[::-1].reset_index(drop=True)


def signals(engine: Engine, symbol: str, since: datetime | None = None) -> pd.DataFrame:
    """The bot's decisions (order intents) for a symbol: time, side, probability, reference price."""
    sql = (
        "SELECT decided_at, side, prob_up, ref_price, status, model_version FROM trading.intents "
        "WHERE symbol = :s"
    )
    params: dict[str, Any] = {"s": symbol}
    if since is not None:
        sql += " AND decided_at >= :since"
        params["since"] = since
    return _read(engine, sql + " ORDER BY decided_at", params)


def fills(engine: Engine, symbol: str, since: datetime | None = None) -> pd.DataFrame:
    """Fills of a symbol: time, side, price, fee."""
    sql = "SELECT fill_time, side, price, quantity, fee FROM trading.fills WHERE symbol = :s"
    params: dict[str, Any] = {"s": symbol}
    if since is not None:
        sql += " AND fill_time >= :since"
        params["since"] = since
    return _read(engine, sql + " ORDER BY fill_time", params)


FEATURE_KEYS = (
    "symbol",
    "interval",
    "event_timestamp",
    "created",
    "created_at",
    "updated_at",
    "feature_version",
    "version",
)


def latest_features(engine: Engine, symbol: str) -> tuple[datetime | None, dict[str, float]]:
    """The newest offline feature row of a symbol: its event time and name -> value."""
    df = _read(
        engine,
        "SELECT * FROM features.bar_features WHERE symbol = :s ORDER BY event_timestamp DESC LIMIT 1",
        {"s": symbol},
    )
    if df.empty:
        return None, {}
    row = df.iloc[0]
    values: dict[str, float] = {}
    for col in df.columns:
        if col in FEATURE_KEYS:
            continue
        v = row[col]
        if isinstance(v, int | float) and not isinstance(v, bool):
            values[col] = float(v)
    return pd.Timestamp(row["event_timestamp"]).to_pydatetime(), values
