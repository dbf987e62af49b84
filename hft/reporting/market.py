"""The Market page: price per symbol with the bot's signals and fills, and the latest features."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pandas as pd
from sqlalchemy import text

from hft.features.spec import ALL_FEATURES, TRADE_COUNT_Z_WINDOW, TRADE_FEATURES

if TYPE_CHECKING:
    from sqlalchemy import Connection
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


@dataclass(frozen=True)
class FeatureRow:
    """The newest offline feature row of a symbol, with what is absent and why."""

    feature_time: datetime | None  # the bar's close time
    version: str  # the feature spec the row was computed with
    values: dict[str, float | None]  # every stored feature; None = absent (NULL)
    absent: dict[str, str] = field(default_factory=dict)  # name -> why it is absent


def latest_features(engine: Engine, symbol: str) -> FeatureRow:
    """The newest offline feature row of a symbol: every feature of ``features.bar_features``."""
    cols = ", ".join(ALL_FEATURES)
    with engine.connect() as conn:
        row = (
            conn.execute(
                text(
                    f"SELECT event_timestamp, open_time, interval, feature_version, {cols} FROM features.bar_features "
                    "WHERE symbol = :s ORDER BY event_timestamp DESC LIMIT 1"
                ),
                {"s": symbol},
            )
            .mappings()
            .first()
        )
        if row is None:
            return FeatureRow(None, "", {})
        values = {n: None if row[n] is None or math.isnan(row[n]) else float(row[n]) for n in ALL_FEATURES}
        missing = [n for n, v in values.items() if v is None]
        absent = absence_reasons(conn, symbol, row["interval"], row["open_time"], missing) if missing else {}
    return FeatureRow(row["event_timestamp"], row["feature_version"], values, absent)


def trade_count_reason(has_count: list[bool], interval: str) -> str:
    """Why the trade-count z-score is absent, from its window's bars, newest first (True: has a count)."""
    without = [i for i, ok in enumerate(has_count) if not ok]  # 0 = the feature's own bar
    if not without:
        return "its window's bars were rewritten since (backfill the features again)"
    left = TRADE_COUNT_Z_WINDOW - without[0]  # until the newest bar without a count leaves the window
    return (
        f"{len(without)} of the last {len(has_count)} {interval} bars have no trade count (history loaded "
        f"from OHLCV klines); defined again after {left} more bar{'s' if left > 1 else ''} from trades"
    )


def absence_reasons(
    conn: Connection, symbol: str, interval: str, bar_open: datetime, names: list[str]
) -> dict[str, str]:
    """Why each of ``names`` is absent for the bar of ``symbol`` opening at ``bar_open``.

    A trade-derived feature is absent (never zero-filled, see :mod:`hft.features.spec`) when a
    bar it reads has no trade columns: klines loaded as history carry OHLCV only. The
    trade-count z-score reads the last ``TRADE_COUNT_Z_WINDOW`` bars, so after a start on
    kline history it stays absent until that many bars have come from trades.
    """
    window = conn.execute(
        text(
            "SELECT open_time, source, trade_count IS NOT NULL AS has_count, vwap IS NOT NULL AS has_vwap "
            "FROM market.bars WHERE symbol = :s AND interval = :i AND open_time <= :t "
            "ORDER BY open_time DESC LIMIT :n"
        ),
        {"s": symbol, "i": interval, "t": bar_open, "n": TRADE_COUNT_Z_WINDOW},
    ).all()
    out: dict[str, str] = {}
    for name in names:
        if name not in TRADE_FEATURES:
            out[name] = "not defined for this bar (warm-up: too few bars before it)"
        elif name == f"trade_count_z_{TRADE_COUNT_Z_WINDOW}":
            out[name] = trade_count_reason([bool(r.has_count) for r in window], interval)
        elif window and not window[0].has_vwap:
            out[name] = f"this {interval} bar has no trade columns (an OHLCV kline, not built from trades)"
        else:
            out[name] = "the bar was rewritten since (backfill the features again)"
    return out
