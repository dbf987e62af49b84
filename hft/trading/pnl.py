"""Performance of the paper book: equity curve, PnL, win rate, Sharpe, drawdown, turnover, fees."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from hft.trading.fills import Fill, Position, apply_fill

SECONDS_PER_YEAR = 365.0 * 24 * 3600


@dataclass(frozen=True)
class TimedFill:
    """A fill with its symbol and time, as read back from storage."""

    symbol: str
    time: datetime
    fill: Fill


@dataclass(frozen=True)
class EquityPoint:
    """Account value (cash + positions at their last known price) at one time."""

    time: datetime
    equity: float


def replay_fills(
    fills: Sequence[TimedFill], starting_cash: float
) -> tuple[list[EquityPoint], dict[str, Position], list[float], float]:
    """Replay fills in time order: equity after each, final positions, realised PnL per closing fill, cash."""
    cash = starting_cash
    positions: dict[str, Position] = {}
    marks: dict[str, float] = {}
    curve: list[EquityPoint] = []
    trade_pnls: list[float] = []
    for tf in sorted(fills, key=lambda f: f.time):
        pos = positions.get(tf.symbol, Position(tf.symbol))
        pos, realized = apply_fill(pos, tf.fill)
        positions[tf.symbol] = pos
        cash += tf.fill.cash_delta
        marks[tf.symbol] = tf.fill.market_price
        if realized != 0.0:
            trade_pnls.append(realized - tf.fill.fee)
        curve.append(EquityPoint(tf.time, cash + sum(p.quantity * marks[s] for s, p in positions.items())))
    return curve, positions, trade_pnls, cash


def max_drawdown(equity: Sequence[float]) -> float:
    """Largest fall from a running peak, as a fraction of that peak (0.0 when it never falls)."""
    peak = -math.inf
    worst = 0.0
    for v in equity:
        peak = max(peak, v)
        if peak > 0:
            worst = max(worst, (peak - v) / peak)
    return worst


def sharpe(equity: Sequence[EquityPoint]) -> float:
    """Annualised Sharpe ratio of the equity curve's returns (zero risk-free rate; 0.0 if undefined).

    Points are irregular in time, so returns are scaled to per-second and annualised with the
    mean spacing.
    """
    if len(equity) < 3:
        return 0.0
    rets = [b.equity / a.equity - 1.0 for a, b in itertools.pairwise(equity) if a.equity > 0]
    span = (equity[-1].time - equity[0].time).total_seconds()
    if len(rets) < 2 or span <= 0:
        return 0.0
    mean = sum(rets) / len(rets)
    var = sum((r - mean) ** 2 for r in rets) / (len(rets) - 1)
    if var <= 0:
        return 0.0
    periods_per_year = SECONDS_PER_YEAR / (span / len(rets))
    return mean / math.sqrt(var) * math.sqrt(periods_per_year)


def report(
    fills: Sequence[TimedFill],
    *,
    starting_cash: float,
    marks: Mapping[str, float],
    as_of: datetime,
) -> dict[str, float | int | str]:
    """Realised and unrealised PnL, win rate, Sharpe, max drawdown, turnover and fees of a set of fills."""
    curve, positions, trade_pnls, cash = replay_fills(fills, starting_cash)
    unrealized = sum(p.unrealized(marks.get(s, p.avg_price)) for s, p in positions.items())
    holdings = sum(p.quantity * marks.get(s, p.avg_price) for s, p in positions.items())
    equity = cash + holdings
    if curve:
        curve.append(EquityPoint(as_of, equity))
    fees = sum(tf.fill.fee for tf in fills)
    turnover = sum(tf.fill.notional for tf in fills)
    wins = sum(1 for p in trade_pnls if p > 0)
    return {
        "as_of": as_of.isoformat(),
        "fills": len(fills),
        "realized_pnl": sum(p.realized_pnl for p in positions.values()),
        "unrealized_pnl": unrealized,
        "fees_paid": fees,
        "net_pnl": equity - starting_cash,
        "cash": cash,
        "equity": equity,
        "closed_trades": len(trade_pnls),
        "win_rate": wins / len(trade_pnls) if trade_pnls else 0.0,
        "sharpe": sharpe(curve),
        "max_drawdown": max_drawdown([starting_cash, *(p.equity for p in curve)]),
        "turnover": turnover,
        "turnover_ratio": turnover / starting_cash if starting_cash else 0.0,
    }
