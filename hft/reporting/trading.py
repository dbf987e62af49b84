"""The Trading page: the paper book's equity, PnL, risk numbers, positions, orders and fills.

Equity, PnL, drawdown and win rate come from :mod:`hft.reporting.book` (their one definition:
the fills of ``trading.fills`` marked at the trades of ``market.ticks``). The kill switch is the
only write, and it goes through the API with the API key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import pandas as pd
from sqlalchemy import text

from hft.config import ConfigurationError, Settings, TransientError
from hft.reporting.book import Book, book
from hft.trading import store

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

    book: Book  # equity, PnL, drawdown, win rate, curve: hft.reporting.book, the one definition
    positions: pd.DataFrame  # symbol, quantity, avg_price, mark, unrealized_pnl, realized_pnl, fees
    bot_state: str
    bot_reason: str


def trading_overview(engine: Engine, settings: Settings) -> TradingOverview:
    """The book's numbers and curve, its positions at their marks, and the bot's state."""
    b = book(engine, settings.starting_cash)
    with engine.connect() as conn:
        bot = store.get_bot_state(conn)
    rows = []
    for sym, pos in sorted(b.positions.items()):
        mark = b.marks[sym].price if sym in b.marks else pos.avg_price
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
    return TradingOverview(b, pd.DataFrame(rows, columns=columns), bot.state.value, bot.reason)


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
