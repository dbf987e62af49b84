"""Persistence of the paper book in the ``trading`` schema (migration ``0003_trading``).

Every statement takes its values as bound parameters. The fill path
(:func:`execute_intent`) runs in one transaction that locks the intent row first, so a
redelivered or concurrently delivered intent fills exactly once.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, text

from hft.config import TransientError
from hft.trading.fills import Fill, Position, apply_fill, simulate_fill
from hft.trading.pnl import TimedFill
from hft.trading.strategy import Intent, Signal, TradingState

ACCOUNT_ID = "paper"
BOT_ID = "bot"


# --------------------------------------------------------------------------------------------
# bot state (the kill switch)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BotState:
    """The bot's trading state as stored, with why and by whom it was last set."""

    state: TradingState
    reason: str
    updated_at: datetime
    updated_by: str


def get_bot_state(conn: Connection) -> BotState:
    """Read the bot's state (ACTIVE when never set)."""
    row = conn.execute(
        text("SELECT state, reason, updated_at, updated_by FROM trading.bot_state WHERE id = :id"),
        {"id": BOT_ID},
    ).first()
    if row is None:
        return BotState(TradingState.ACTIVE, "never set", datetime.fromtimestamp(0, UTC), "")
    return BotState(TradingState(row.state), row.reason, row.updated_at, row.updated_by)


def set_bot_state(conn: Connection, state: TradingState, reason: str, by: str, now: datetime) -> None:
    """Set the bot's state (upsert); the bot reads it before every intent."""
    conn.execute(
        text(
            "INSERT INTO trading.bot_state (id, state, reason, updated_at, updated_by) "
            "VALUES (:id, :state, :reason, :now, :by) ON CONFLICT (id) DO UPDATE SET state = EXCLUDED.state, "
            "reason = EXCLUDED.reason, updated_at = EXCLUDED.updated_at, updated_by = EXCLUDED.updated_by"
        ),
        {"id": BOT_ID, "state": state.value, "reason": reason, "now": now, "by": by},
    )


# --------------------------------------------------------------------------------------------
# intents
# --------------------------------------------------------------------------------------------


def insert_intent(
    conn: Connection,
    intent: Intent,
    *,
    model_name: str,
    model_version: str,
    feature_time: datetime | None,
    tick_receive_ns: int | None,
) -> uuid.UUID:
    """Persist an order intent as pending and return its id."""
    intent_id = uuid.uuid4()
    conn.execute(
        text(
            "INSERT INTO trading.intents (id, symbol, side, quantity, ref_price, prob_up, model_name, "
            "model_version, feature_time, decided_at, tick_receive_ns) VALUES (:id, :symbol, :side, :qty, "
            ":ref, :prob, :mname, :mver, :ftime, :decided, :recv)"
        ),
        {
            "id": intent_id,
            "symbol": intent.symbol,
            "side": intent.side.value,
            "qty": intent.quantity,
            "ref": intent.ref_price,
            "prob": intent.prob_up,
            "mname": model_name,
            "mver": model_version,
            "ftime": feature_time,
            "decided": intent.decided_at,
            "recv": tick_receive_ns,
        },
    )
    return intent_id


def last_intent_at(conn: Connection, symbol: str) -> datetime | None:
    """Decision time of the symbol's latest intent (for the cooldown)."""
    value = conn.execute(
        text("SELECT max(decided_at) FROM trading.intents WHERE symbol = :s"), {"s": symbol}
    ).scalar()
    return value if isinstance(value, datetime) else None


def position_qty(conn: Connection, symbol: str) -> float:
    """Quantity held of ``symbol`` (0.0 when none)."""
    value = conn.execute(
        text("SELECT quantity FROM trading.positions WHERE symbol = :s"), {"s": symbol}
    ).scalar()
    return float(value) if value is not None else 0.0


@dataclass(frozen=True)
class OpenEntry:
    """The entry of a symbol's open position, as the intents say (issue 23: the bot's time exit).

    ``decided_at``: the decision time of the first buy after the last sell (pending or filled);
    the model that decided it (its horizon closes the position); ``exiting``: a sell is pending.
    """

    decided_at: datetime | None
    model_name: str
    model_version: str
    exiting: bool


def open_entry(conn: Connection, symbol: str) -> OpenEntry:
    """When the symbol's open position was entered, from ``trading.intents`` (it survives a restart).

    Buys and sells that are pending or filled count (a rejected intent never traded): the entry is
    the earliest buy decided after the latest such sell; with a sell pending the position is being
    closed. ``decided_at`` is None when no buy follows the latest sell (flat, or only dust left).
    """
    row = conn.execute(
        text(
            "SELECT max(decided_at) AS last_sell, bool_or(status = 'pending') AS pending FROM trading.intents "
            "WHERE symbol = :s AND side = 'sell' AND status IN ('pending', 'filled')"
        ),
        {"s": symbol},
    ).one()
    last_sell, sell_pending = row.last_sell, bool(row.pending)
    entry = conn.execute(
        text(
            "SELECT decided_at, model_name, model_version FROM trading.intents WHERE symbol = :s "
            "AND side = 'buy' AND status IN ('pending', 'filled') "
            "AND (CAST(:after AS timestamptz) IS NULL OR decided_at > :after) ORDER BY decided_at LIMIT 1"
        ),
        {"s": symbol, "after": last_sell},
    ).first()
    if entry is None:
        return OpenEntry(None, "", "", sell_pending)
    return OpenEntry(entry.decided_at, str(entry.model_name or ""), str(entry.model_version or ""), False)


def pending_intent_ids(conn: Connection, older_than: datetime) -> list[str]:
    """Ids of intents still pending that were decided before ``older_than`` (to resend)."""
    rows = conn.execute(
        text(
            "SELECT id FROM trading.intents WHERE status = 'pending' AND decided_at < :t ORDER BY decided_at"
        ),
        {"t": older_than},
    )
    return [str(r.id) for r in rows]


# --------------------------------------------------------------------------------------------
# market prices
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MarketTrade:
    """A trade from ``market.ticks`` used as the fill's market price."""

    price: float
    trade_time: datetime
    trade_id: int | None
    source: str  # "next_trade" or "last_trade"


def next_trade(conn: Connection, symbol: str, at: datetime) -> MarketTrade | None:
    """The first recorded trade of ``symbol`` at or after ``at``."""
    row = conn.execute(
        text(
            "SELECT price, trade_time, trade_id FROM market.ticks WHERE symbol = :s AND trade_time >= :t "
            "ORDER BY trade_time, trade_id LIMIT 1"
        ),
        {"s": symbol, "t": at},
    ).first()
    return None if row is None else MarketTrade(float(row.price), row.trade_time, row.trade_id, "next_trade")


def last_trade(conn: Connection, symbol: str, before: datetime | None = None) -> MarketTrade | None:
    """The latest recorded trade of ``symbol`` (at or before ``before`` when given)."""
    cond = "AND trade_time <= :t " if before is not None else ""
    row = conn.execute(
        text(
            f"SELECT price, trade_time, trade_id FROM market.ticks WHERE symbol = :s {cond}"
            "ORDER BY trade_time DESC, trade_id DESC LIMIT 1"
        ),
        {"s": symbol, "t": before},
    ).first()
    return None if row is None else MarketTrade(float(row.price), row.trade_time, row.trade_id, "last_trade")


# --------------------------------------------------------------------------------------------
# the fill path
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FillParams:
    """How the simulator fills: latency, slippage, fees, and how long to wait for the next trade."""

    order_latency_ms: float
    slippage_bps: float
    taker_fee_bps: float
    starting_cash: float
    max_wait_s: float = 30.0


@dataclass(frozen=True)
class ExecutionResult:
    """What :func:`execute_intent` did: ``filled`` now, ``already`` filled before, or ``rejected``."""

    intent_id: str
    outcome: str
    fill_price: float | None = None
    quantity: float | None = None
    fee: float | None = None


def _ensure_account(conn: Connection, starting_cash: float) -> None:
    conn.execute(
        text(
            "INSERT INTO trading.account (id, cash, starting_cash) VALUES (:id, :c, :c) ON CONFLICT (id) DO NOTHING"
        ),
        {"id": ACCOUNT_ID, "c": starting_cash},
    )


def execute_intent(engine: Engine, intent_id: str, params: FillParams, now: datetime) -> ExecutionResult:
    """Fill one pending intent against the market, once; persist order, fill, position and cash.

    The market price is the first trade at or after decision time + order latency. When that
    trade has not been recorded yet the call raises :class:`TransientError` (the task retries);
    when the intent has waited longer than ``max_wait_s`` (the feed stopped), the last trade
    before the fill time is used and the fill says so in ``price_source``.
    """
    with engine.begin() as conn:
        row = conn.execute(
            text(
                "SELECT id, symbol, side, quantity, decided_at, status, created_at FROM trading.intents "
                "WHERE id = :id FOR UPDATE"
            ),
            {"id": intent_id},
        ).first()
        if row is None:
            return ExecutionResult(intent_id, "unknown")
        if row.status != "pending":
            return ExecutionResult(intent_id, "already" if row.status == "filled" else row.status)
        fill_at = row.decided_at + timedelta(milliseconds=params.order_latency_ms)
        trade = next_trade(conn, row.symbol, fill_at)
        if trade is None:
            # waited on the market clock, or since the intent was written on the wall clock (a replay's
            # clock can run ahead of the wall clock: its feed may end before the market reaches fill_at)
            waited = max((now - fill_at).total_seconds(), (now - row.created_at).total_seconds())
            if waited < params.max_wait_s:
                raise TransientError(f"no trade of {row.symbol} at or after {fill_at.isoformat()} yet")
            trade = last_trade(conn, row.symbol, fill_at)
            if trade is None:
                conn.execute(
                    text("UPDATE trading.intents SET status = 'rejected', status_reason = :r WHERE id = :id"),
                    {"id": intent_id, "r": "no market price"},
                )
                return ExecutionResult(intent_id, "rejected")
        side = Signal(row.side)
        fill = simulate_fill(
            side,
            float(row.quantity),
            trade.price,
            slippage_bps=params.slippage_bps,
            fee_bps=params.taker_fee_bps,
        )
        fill_time = max(fill_at, trade.trade_time)
        order_id = conn.execute(
            text(
                "INSERT INTO trading.orders (intent_id, symbol, side, quantity, status, submitted_at, filled_at) "
                "VALUES (:iid, :s, :side, :q, 'filled', :sub, :filled) RETURNING id"
            ),
            {
                "iid": intent_id,
                "s": row.symbol,
                "side": side.value,
                "q": fill.quantity,
                "sub": row.decided_at,
                "filled": fill_time,
            },
        ).scalar_one()
        prow = conn.execute(
            text(
                "SELECT quantity, avg_price, realized_pnl, fees FROM trading.positions WHERE symbol = :s FOR UPDATE"
            ),
            {"s": row.symbol},
        ).first()
        pos = (
            Position(row.symbol)
            if prow is None
            else Position(
                row.symbol,
                float(prow.quantity),
                float(prow.avg_price),
                float(prow.realized_pnl),
                float(prow.fees),
            )
        )
        new_pos, realized = apply_fill(pos, fill)
        conn.execute(
            text(
                "INSERT INTO trading.fills (order_id, intent_id, symbol, side, quantity, price, market_price, "
                "slippage_bps, fee, fee_bps, liquidity, fill_time, price_source, trade_id, realized_pnl) VALUES "
                "(:oid, :iid, :s, :side, :q, :p, :mp, :slip, :fee, :fbps, :liq, :t, :src, :tid, :rpnl)"
            ),
            {
                "oid": order_id,
                "iid": intent_id,
                "s": row.symbol,
                "side": side.value,
                "q": fill.quantity,
                "p": fill.price,
                "mp": fill.market_price,
                "slip": params.slippage_bps,
                "fee": fill.fee,
                "fbps": fill.fee_bps,
                "liq": fill.liquidity,
                "t": fill_time,
                "src": trade.source,
                "tid": trade.trade_id,
                "rpnl": realized,
            },
        )
        conn.execute(
            text(
                "INSERT INTO trading.positions (symbol, quantity, avg_price, realized_pnl, fees, updated_at) "
                "VALUES (:s, :q, :avg, :r, :f, :t) ON CONFLICT (symbol) DO UPDATE SET quantity = EXCLUDED.quantity, "
                "avg_price = EXCLUDED.avg_price, realized_pnl = EXCLUDED.realized_pnl, fees = EXCLUDED.fees, "
                "updated_at = EXCLUDED.updated_at"
            ),
            {
                "s": row.symbol,
                "q": new_pos.quantity,
                "avg": new_pos.avg_price,
                "r": new_pos.realized_pnl,
                "f": new_pos.fees,
                "t": fill_time,
            },
        )
        _ensure_account(conn, params.starting_cash)
        conn.execute(
            text(
                "UPDATE trading.account SET cash = cash + :d, fees_paid = fees_paid + :f, updated_at = :t WHERE id = :id"
            ),
            {"d": fill.cash_delta, "f": fill.fee, "t": fill_time, "id": ACCOUNT_ID},
        )
        conn.execute(
            text("UPDATE trading.intents SET status = 'filled', status_reason = '' WHERE id = :id"),
            {"id": intent_id},
        )
    return ExecutionResult(intent_id, "filled", fill.price, fill.quantity, fill.fee)


# --------------------------------------------------------------------------------------------
# reading the book back
# --------------------------------------------------------------------------------------------


def load_fills(
    conn: Connection, start: datetime | None = None, end: datetime | None = None
) -> list[TimedFill]:
    """Fills in ``[start, end)`` (all when unbounded), oldest first."""
    rows = conn.execute(
        text(
            "SELECT symbol, side, quantity, price, market_price, fee, fee_bps, liquidity, fill_time "
            "FROM trading.fills WHERE (CAST(:a AS timestamptz) IS NULL OR fill_time >= :a) "
            "AND (CAST(:b AS timestamptz) IS NULL OR fill_time < :b) ORDER BY fill_time, id"
        ),
        {"a": start, "b": end},
    )
    return [
        TimedFill(
            r.symbol,
            r.fill_time,
            Fill(
                Signal(r.side),
                float(r.quantity),
                float(r.price),
                float(r.market_price),
                float(r.fee),
                float(r.fee_bps),
                r.liquidity,
            ),
        )
        for r in rows
    ]


def positions(conn: Connection) -> dict[str, Position]:
    """Every stored position."""
    rows = conn.execute(text("SELECT symbol, quantity, avg_price, realized_pnl, fees FROM trading.positions"))
    return {
        r.symbol: Position(
            r.symbol, float(r.quantity), float(r.avg_price), float(r.realized_pnl), float(r.fees)
        )
        for r in rows
    }


def daily_pnl(conn: Connection, day_start: datetime, marks: Mapping[str, float]) -> float:
    """Today's PnL: realised net of fees since ``day_start`` plus the open positions' unrealised PnL."""
    realized = conn.execute(
        text("SELECT coalesce(sum(realized_pnl - fee), 0) FROM trading.fills WHERE fill_time >= :t"),
        {"t": day_start},
    ).scalar_one()
    unrealized = sum(p.unrealized(marks[s]) for s, p in positions(conn).items() if s in marks and p.quantity)
    return float(realized) + unrealized


def insert_report(
    conn: Connection,
    kind: str,
    start: datetime,
    end: datetime,
    metrics: Mapping[str, Any],
    html_path: str | None,
) -> None:
    """Store a report (a daily report replaces the one of the same day)."""
    params = {"k": kind, "a": start, "b": end, "m": json.dumps(dict(metrics), default=str), "h": html_path}
    if kind == "daily":
        conn.execute(
            text(
                "INSERT INTO trading.reports (kind, period_start, period_end, metrics, html_path) VALUES "
                "(:k, :a, :b, CAST(:m AS jsonb), :h) ON CONFLICT (period_start) WHERE kind = 'daily' DO UPDATE SET "
                "period_end = EXCLUDED.period_end, metrics = EXCLUDED.metrics, html_path = EXCLUDED.html_path, "
                "created_at = now()"
            ),
            params,
        )
    else:
        conn.execute(
            text(
                "INSERT INTO trading.reports (kind, period_start, period_end, metrics, html_path) VALUES "
                "(:k, :a, :b, CAST(:m AS jsonb), :h)"
            ),
            params,
        )


def bar_close(conn: Connection, symbol: str, interval: str, open_time: datetime) -> float | None:
    """Close price of a stored bar, else the last trade before the bar's end (None when neither is known)."""
    value = conn.execute(
        text("SELECT close FROM market.bars WHERE symbol = :s AND interval = :i AND open_time = :t"),
        {"s": symbol, "i": interval, "t": open_time},
    ).scalar()
    if value is not None:
        return float(value)
    return None
