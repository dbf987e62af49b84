"""The Trading page: the paper book's equity, PnL, risk numbers, positions, orders and fills.

Numbers come from :mod:`hft.trading.pnl` (the same code as the ``reports.pnl`` task) applied to
the fills read by :mod:`hft.trading.store`, marked at the last stored trade per symbol. The
kill switch is the only write, and it goes through the API with the API key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import httpx
import pandas as pd
from sqlalchemy import text

from hft.config import ConfigurationError, Settings, TransientError
from hft.trading import store
from hft.trading.pnl import replay_fills, report
from hft.trading.reports import current_marks

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

FILL_COLUMNS = (
    "fill_time",
    "symbol",
    "side",
    "quantity",
    "price",
    "market_price",
    "slippage_bps",
    "fee",
    "fee_bps",
    "liquidity",
    "realized_pnl",
    "price_source",
    "trade_id",
    "intent_id",
    "order_id",
)


def _read(engine: Engine, sql: str, params: dict[str, Any] | None = None) -> pd.DataFrame:
    with engine.connect() as conn:
        return pd.read_sql(text(sql), conn, params=params or {})


def load_fills(
    engine: Engine, symbol: str | None = None, side: str | None = None, limit: int | None = None
) -> pd.DataFrame:
    """Fills, newest first, optionally for one symbol and side."""
    where, params = _filters(symbol, side)
    sql = f"SELECT {', '.join(FILL_COLUMNS)} FROM trading.fills{where} ORDER BY fill_time DESC, id DESC"
    if limit:
        sql += " LIMIT :limit"
        params["limit"] = limit
    return _read(engine, sql, params)


def load_orders(
    engine: Engine,
    symbol: str | None = None,
    side: str | None = None,
    status: str | None = None,
    limit: int = 500,
) -> pd.DataFrame:
    """Orders with their intent's probability and their fill (price, fee), newest first."""
    where, params = _filters(symbol, side, prefix="o.")
    if status:
        where += (" AND " if where else " WHERE ") + "o.status = :status"
        params["status"] = status
    params["limit"] = limit
    sql = f"""
        SELECT o.submitted_at, o.symbol, o.side, o.order_type, o.quantity, o.status, i.prob_up,
               i.model_version, f.price AS fill_price, f.fee, f.fee_bps, f.slippage_bps, f.realized_pnl,
               o.filled_at
        FROM trading.orders o
        JOIN trading.intents i ON i.id = o.intent_id
        LEFT JOIN trading.fills f ON f.order_id = o.id
        {where}
        ORDER BY o.submitted_at DESC, o.id DESC
        LIMIT :limit"""
    return _read(engine, sql, params)


def _filters(symbol: str | None, side: str | None, prefix: str = "") -> tuple[str, dict[str, Any]]:
    clauses, params = [], {}
    if symbol:
        clauses.append(f"{prefix}symbol = :symbol")
        params["symbol"] = symbol
    if side:
        clauses.append(f"{prefix}side = :side")
        params["side"] = side
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


@dataclass(frozen=True)
class TradingOverview:
    """Everything the Trading page's top half shows."""

    kpis: dict[str, float | int | str]  # hft.trading.pnl.report(...) plus the bot state
    equity: pd.DataFrame  # time, equity
    positions: pd.DataFrame  # symbol, quantity, avg_price, mark, unrealized_pnl, realized_pnl, fees
    bot_state: str
    bot_reason: str


def starting_cash(engine: Engine, settings: Settings) -> float:
    """The paper account's starting cash (the account row, else the setting)."""
    df = _read(engine, "SELECT starting_cash FROM trading.account WHERE id = 'paper'")
    return float(df["starting_cash"].iloc[0]) if not df.empty else settings.starting_cash


def trading_overview(engine: Engine, settings: Settings, as_of: datetime) -> TradingOverview:
    """PnL report, equity curve, positions and bot state as of ``as_of``."""
    with engine.connect() as conn:
        fills = store.load_fills(conn)
        held = store.positions(conn)
        bot = store.get_bot_state(conn)
    cash0 = starting_cash(engine, settings)
    symbols = sorted({f.symbol for f in fills} | set(held))
    marks = current_marks(engine, symbols)
    kpis = report(fills, starting_cash=cash0, marks=marks, as_of=as_of)
    curve, _, _, _ = replay_fills(fills, cash0)
    # the curve ends at the last fill; the cards carry the value marked as of now
    equity = pd.DataFrame({"time": [p.time for p in curve], "equity": [p.equity for p in curve]})
    rows = []
    for sym, pos in sorted(held.items()):
        mark = marks.get(sym, pos.avg_price)
        rows.append(
            {
                "symbol": sym,
                "quantity": pos.quantity,
                "avg_price": pos.avg_price,
                "mark": mark,
                "unrealized_pnl": pos.unrealized(mark),
                "realized_pnl": pos.realized_pnl,
                "fees": pos.fees,
            }
        )
    columns = ["symbol", "quantity", "avg_price", "mark", "unrealized_pnl", "realized_pnl", "fees"]
    return TradingOverview(kpis, equity, pd.DataFrame(rows, columns=columns), bot.state.value, bot.reason)


def kill_switch(settings: Settings, halt: bool, reason: str = "dashboard") -> dict[str, Any]:
    """Halt (or resume) the trading bot through the API; the API key is required."""
    if settings.api_key is None:
        raise ConfigurationError("HFT_API_KEY is not set: the kill switch needs the API key")
    path = "/bot/halt" if halt else "/bot/resume"
    try:
        resp = httpx.post(
            f"{settings.api_base_url}{path}",
            json={"reason": reason},
            headers={"X-API-Key": settings.api_key.get_secret_value()},
            timeout=5.0,
        )
    except httpx.HTTPError as exc:
        raise TransientError(f"API unreachable at {settings.api_base_url}: {exc}") from exc
    if resp.status_code >= 400:
        raise TransientError(f"API {path} answered {resp.status_code}: {resp.text[:200]}")
    body: dict[str, Any] = resp.json()
    return body
