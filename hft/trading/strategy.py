"""Signals from model probabilities and order intents under risk limits and trading states.

The book is long-only spot (Binance spot cannot short): a ``buy`` signal adds
``order_notional`` up to ``max_position_notional``; a ``sell`` signal sells up to
``order_notional`` worth of what is held. Everything here is pure: the caller passes the
clock (``now``), the position and the day's PnL.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from hft.config import Settings

_QTY_DECIMALS = 8
_MIN_NOTIONAL = 1.0  # below this an order is dust; Binance's minimum notional is higher still


class Signal(StrEnum):
    """What the model's probability says to do."""

    BUY = "buy"
    SELL = "sell"
    HOLD = "hold"


class TradingState(StrEnum):
    """ACTIVE trades both ways, REDUCING only sells down what is held, HALTED sends nothing."""

    ACTIVE = "active"
    REDUCING = "reducing"
    HALTED = "halted"


_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def expected_move_bps(vol_per_bar: float, horizon_bars: int) -> float:
    """Expected size of the move over ``horizon_bars`` (bps) from the recent per-bar volatility.

    ``vol_per_bar`` is the standard deviation of one-bar log returns (the feature ``vol_64``);
    for a random walk E|r_h| = sqrt(2/pi) * sigma * sqrt(h).
    """
    if not math.isfinite(vol_per_bar) or vol_per_bar < 0:
        return math.nan
    return _SQRT_2_OVER_PI * vol_per_bar * math.sqrt(max(1, horizon_bars)) * 1e4


def expected_edge_bps(prob_up: float, move_bps: float) -> float:
    """Expected gross return (bps) of a long held over the horizon: (2p - 1) x expected move.

    A short's is the negative. With a calibrated ``prob_up`` this is the edge a trade must have
    to pay its costs.
    """
    return (2.0 * prob_up - 1.0) * move_bps


def signal_from_prob(
    prob_up: float,
    buy_threshold: float,
    sell_threshold: float,
    *,
    move_bps: float | None = None,
    cost_bps: float = 0.0,
) -> Signal:
    """Map the probability of an up move to a signal: the one trading rule of the backtest and the bot.

    Buy at or above ``buy_threshold``, sell at or below ``sell_threshold``, hold between. Given the
    expected move over the horizon (``move_bps``, see :func:`expected_move_bps`), a signal also
    needs an expected edge (:func:`expected_edge_bps`) above ``cost_bps`` (the round trip: taker
    fee and slippage, both sides) or it holds: trade only when it pays. ``hft evaluate``'s backtest
    (:func:`hft.ml.metrics.backtest`) calls this function for every decision.
    """
    if not sell_threshold <= buy_threshold:
        raise ValueError(f"sell_threshold {sell_threshold} above buy_threshold {buy_threshold}")
    if prob_up >= buy_threshold:
        signal = Signal.BUY
    elif prob_up <= sell_threshold:
        signal = Signal.SELL
    else:
        return Signal.HOLD
    if move_bps is None:
        return signal
    if not math.isfinite(move_bps):
        return Signal.HOLD  # no volatility estimate: no edge estimate, no trade
    edge = expected_edge_bps(prob_up, move_bps)
    if (edge if signal is Signal.BUY else -edge) <= cost_bps:
        return Signal.HOLD
    return signal


@dataclass(frozen=True)
class RiskLimits:
    """Per-symbol order size, position cap, cooldown between intents and the daily loss limit."""

    order_notional: float
    max_position_notional: float
    cooldown_s: float
    daily_loss_limit: float

    @classmethod
    def from_settings(cls, settings: Settings) -> RiskLimits:
        """Build the limits from the settings."""
        return cls(
            order_notional=settings.order_notional,
            max_position_notional=settings.max_position_notional,
            cooldown_s=settings.cooldown_s,
            daily_loss_limit=settings.daily_loss_limit,
        )


@dataclass(frozen=True)
class Intent:
    """An order the bot wants; the worker fills it (the bot never fills its own orders)."""

    symbol: str
    side: Signal
    quantity: float
    ref_price: float
    prob_up: float
    decided_at: datetime

    @property
    def notional(self) -> float:
        """Quantity times the reference price."""
        return self.quantity * self.ref_price


@dataclass(frozen=True)
class Decision:
    """The outcome of one evaluation: an intent or the reason there is none, and the state after."""

    intent: Intent | None
    reason: str
    state: TradingState


def decide(
    *,
    symbol: str,
    signal: Signal,
    prob_up: float,
    price: float,
    position_qty: float,
    state: TradingState,
    last_intent_at: datetime | None,
    now: datetime,
    daily_pnl: float,
    limits: RiskLimits,
) -> Decision:
    """Turn a signal into an order intent, or say why not (halted, loss limit, cooldown, limits)."""
    if state is TradingState.HALTED:
        return Decision(None, "halted", state)
    if daily_pnl <= -limits.daily_loss_limit:
        return Decision(None, "daily_loss_limit", TradingState.HALTED)
    if signal is Signal.HOLD:
        return Decision(None, "hold", state)
    if price <= 0:
        return Decision(None, "no_price", state)
    if last_intent_at is not None and (now - last_intent_at).total_seconds() < limits.cooldown_s:
        return Decision(None, "cooldown", state)
    if signal is Signal.BUY:
        if state is TradingState.REDUCING:
            return Decision(None, "reducing", state)
        room = limits.max_position_notional - max(position_qty, 0.0) * price
        notional = min(limits.order_notional, room)
        if notional < _MIN_NOTIONAL:
            return Decision(None, "position_limit", state)
        qty = round(notional / price, _QTY_DECIMALS)
    else:
        if position_qty <= 0:
            return Decision(None, "flat", state)
        qty = round(min(position_qty, limits.order_notional / price), _QTY_DECIMALS)
        if qty * price < _MIN_NOTIONAL:
            qty = position_qty  # sell the dust with the rest rather than leave it stranded
    if qty <= 0:
        return Decision(None, "zero_quantity", state)
    return Decision(Intent(symbol, signal, qty, price, prob_up, now), "intent", state)
