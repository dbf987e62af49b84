"""The paper book's numbers, defined once: equity, PnL, drawdown and win rate.

Every tile and chart of the Trading page reads :func:`book`; nothing else computes them.
Amounts are in the quote currency; times are the market's clock (the replay's recorded time,
or now when trading live).

* **mark** of a symbol at ``t``: the price of its newest trade in ``market.ticks`` with
  ``trade_time <= t``.
* **cash(t)** = starting cash + the cash deltas of the fills with ``fill_time <= t`` (a buy
  pays ``quantity * price + fee``, a sell receives ``quantity * price - fee``).
* **equity(t)** = cash(t) + the quantity held of each symbol at ``t`` times its mark at ``t``.
* **as of**: the newest trade of any symbol the book traded (or the last fill, if later): the
  moment the marks are from. The equity tile is equity(as of).
* **net PnL** = equity(as of) - starting cash = realised PnL - fees + unrealised PnL. The
  unrealised part follows the marks, so net PnL moves between fills; realised PnL and fees
  move only on a fill.
* **equity curve**: equity(t) on a regular grid of ``points`` times from one step before the
  first fill (where equity is the starting cash) to as of; its last point is the tile.
* **max drawdown**: the largest fall of the curve below its running peak, as a fraction of
  that peak and in quote currency. It is computed on the curve as drawn.
* **closed trade**: a fill that realised PnL (it reduced or closed a position); a **win** when
  that realised PnL exceeds the fill's own fee. Win rate = wins / closed trades, ``None``
  when no trade has closed (the page shows "—").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import pandas as pd
from sqlalchemy import text

from hft.trading import store
from hft.trading.fills import Position, apply_fill
from hft.trading.pnl import EquityPoint, TimedFill, sharpe

if TYPE_CHECKING:
    from sqlalchemy import Connection
    from sqlalchemy.engine import Engine

CURVE_POINTS = 400
SHARPE_MIN_SPAN = timedelta(days=1)  # an annualised Sharpe ratio from minutes of data means nothing


@dataclass(frozen=True)
class Mark:
    """The price a symbol is valued at, and the time of the trade it comes from."""

    symbol: str
    price: float
    time: datetime


@dataclass(frozen=True)
class Book:
    """Every number the Trading page shows about the paper book, from one computation."""

    starting_cash: float
    as_of: datetime | None  # None: no fill yet
    cash: float
    equity: float
    realized_pnl: float  # before fees
    fees_paid: float
    unrealized_pnl: float
    net_pnl: float
    fills: int
    turnover: float
    closed_trades: int
    wins: int
    win_rate: float | None
    max_drawdown: float  # fraction of the running peak
    max_drawdown_quote: float
    sharpe: float | None  # None when the curve spans less than SHARPE_MIN_SPAN
    marks: dict[str, Mark] = field(default_factory=dict)
    positions: dict[str, Position] = field(default_factory=dict)
    curve: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["time", "equity"]))
    step: timedelta | None = None  # spacing of the curve's grid

    @property
    def realized_net(self) -> float:
        """Realised PnL after every fee paid."""
        return self.realized_pnl - self.fees_paid


def grid(start: datetime, end: datetime, points: int = CURVE_POINTS) -> tuple[list[datetime], timedelta]:
    """``start`` + k * step up to ``end`` (exclusive), then ``end``; step in whole microseconds."""
    span_us = (end - start) // timedelta(microseconds=1)
    if span_us <= 0:
        return [end], timedelta(0)
    step = timedelta(microseconds=max(1, math.ceil(span_us / max(1, points - 1))))
    times = []
    t = start
    while t < end:
        times.append(t)
        t += step
    times.append(end)
    return times, step


def drawdown(equity: Sequence[float], first_peak: float) -> tuple[float, float]:
    """Largest fall below the running peak (which starts at ``first_peak``): (fraction, quote)."""
    peak = first_peak
    worst, worst_quote = 0.0, 0.0
    for v in equity:
        peak = max(peak, v)
        if peak > 0 and (peak - v) / peak > worst:
            worst, worst_quote = (peak - v) / peak, peak - v
    return worst, worst_quote


def _marks_on_grid(
    conn: Connection, symbol: str, times: list[datetime], step: timedelta
) -> list[float | None]:
    """The symbol's mark at each grid time (one scan of its trades in the grid's span)."""
    before = store.last_trade(conn, symbol, times[0])
    out: list[float | None] = [None] * len(times)
    out[0] = before.price if before else None
    if len(times) > 1:
        rows = conn.execute(
            text(
                "SELECT DISTINCT ON (k) k, price FROM ("
                "  SELECT LEAST(CAST(ceil(extract(epoch FROM (trade_time - :t0)) * 1000000 / :step) AS bigint),"
                "               :last) AS k, price, trade_time, trade_id"
                "  FROM market.ticks WHERE symbol = :s AND trade_time > :t0 AND trade_time <= :t1"
                ") x ORDER BY k, trade_time DESC, trade_id DESC"
            ),
            {
                "s": symbol,
                "t0": times[0],
                "t1": times[-1],
                "step": step // timedelta(microseconds=1),
                "last": len(times) - 1,
            },
        ).all()
        for k, price in rows:
            out[int(k)] = float(price)
        for i in range(1, len(out)):  # no trade in a step: the mark stays
            if out[i] is None:
                out[i] = out[i - 1]
    return out


def starting_cash(conn: Connection, default: float) -> float:
    """The paper account's starting cash (its row, else ``default``: the setting)."""
    value = conn.execute(text("SELECT starting_cash FROM trading.account WHERE id = 'paper'")).scalar()
    return float(value) if value is not None else default


def book(engine: Engine, default_cash: float, points: int = CURVE_POINTS) -> Book:
    """The book's numbers and equity curve from ``trading.fills`` and ``market.ticks`` (module docstring)."""
    with engine.connect() as conn:
        cash0 = starting_cash(conn, default_cash)
        fills = store.load_fills(conn)
        if not fills:
            return Book(cash0, None, cash0, cash0, 0.0, 0.0, 0.0, 0.0, 0, 0.0, 0, 0, None, 0.0, 0.0, None)
        symbols = sorted({f.symbol for f in fills})
        last = {s: store.last_trade(conn, s) for s in symbols}
        as_of = max([f.time for f in fills] + [t.trade_time for t in last.values() if t is not None])
        first = fills[0].time
        times, step = grid(first, as_of, points)
        if step > timedelta(0):
            times = [first - step, *times]  # one step before the first fill: the starting cash
        marks = {s: _marks_on_grid(conn, s, times, step) for s in symbols}
    return _replay(cash0, fills, times, marks, last, as_of, step if step > timedelta(0) else None)


def _replay(
    cash0: float,
    fills: list[TimedFill],
    times: list[datetime],
    marks: dict[str, list[float | None]],
    last: dict[str, store.MarketTrade | None],
    as_of: datetime,
    step: timedelta | None,
) -> Book:
    cash = cash0
    positions: dict[str, Position] = {}
    closed = wins = 0
    realized = fees = turnover = 0.0
    equity: list[float] = []
    i = 0
    for k, t in enumerate(times):
        while i < len(fills) and fills[i].time <= t:
            tf = fills[i]
            pos, pnl = apply_fill(positions.get(tf.symbol, Position(tf.symbol)), tf.fill)
            positions[tf.symbol] = pos
            cash += tf.fill.cash_delta
            realized += pnl
            fees += tf.fill.fee
            turnover += tf.fill.notional
            if pnl != 0.0:
                closed += 1
                wins += pnl > tf.fill.fee
            i += 1
        value = cash
        for s, p in positions.items():
            m = marks[s][k]
            value += p.quantity * (m if m is not None else p.avg_price)
        equity.append(value)
    final = {s: Mark(s, t.price, t.trade_time) for s, t in last.items() if t is not None}
    unrealized = sum(
        p.unrealized(final[s].price if s in final else p.avg_price) for s, p in positions.items()
    )
    dd, dd_quote = drawdown(equity, cash0)
    span = times[-1] - times[0]
    sr = (
        sharpe([EquityPoint(t, v) for t, v in zip(times, equity, strict=True)])
        if span >= SHARPE_MIN_SPAN
        else None
    )
    return Book(
        starting_cash=cash0,
        as_of=as_of,
        cash=cash,
        equity=equity[-1],
        realized_pnl=realized,
        fees_paid=fees,
        unrealized_pnl=unrealized,
        net_pnl=equity[-1] - cash0,
        fills=len(fills),
        turnover=turnover,
        closed_trades=closed,
        wins=wins,
        win_rate=wins / closed if closed else None,
        max_drawdown=dd,
        max_drawdown_quote=dd_quote,
        sharpe=sr,
        marks=final,
        positions=dict(positions),
        curve=pd.DataFrame({"time": times, "equity": equity}),
        step=step,
    )
