"""Signals from model probabilities and order intents under risk limits and trading states.

The book is long-only spot (Binance spot cannot short): a ``buy`` signal adds
``order_notional`` up to ``max_position_notional``; a ``sell`` signal sells up to
``order_notional`` worth of what is held. Everything here is pure: the caller passes the
clock (``now``), the position and the day's PnL.
"""

from __future__ import annotations

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


def signal_from_prob(prob_up: float, buy_threshold: float, sell_threshold: float) -> Signal:
    """Map the probability of an up move to a signal (buy above, sell below, hold between)."""
    if not sell_threshold <= buy_threshold:
        raise ValueError(f"sell_threshold {sell_threshold} above buy_threshold {buy_threshold}")
    if prob_up >= buy_threshold:
        return Signal.BUY
    if prob_up <= sell_threshold:
        return Signal.SELL
    return Signal.HOLD


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
