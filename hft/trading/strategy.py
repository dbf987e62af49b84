"""Signals from model probabilities, the trade lifecycle, and order intents under risk limits.

The book is long-only spot (Binance spot cannot short). The lifecycle (:func:`lifecycle_step`,
issue 23) is the one implementation of how a position is opened and closed, used by the live
bot (:meth:`hft.trading.bot.TradingBot.on_bar`) bar by bar and by ``hft evaluate``'s backtest
(:func:`simulate_book`, called by :func:`hft.ml.metrics.backtest`): flat and a ``buy`` signal
(:func:`signal_from_prob`: thresholds and expected edge above the round trip) opens one
position of ``order_notional``; it is closed, whole, once it has been held the model's horizon
(``horizon`` bars, a time exit, on the bar-close clock); signals while it is held change
nothing, and a ``sell`` signal while flat is no trade (no shorts). Barrier-label models are
also closed at the time limit only: their barrier exit is not traded (yet) by either side.
Everything here is pure: the caller passes the clock (``now``), the position and the day's PnL.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

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


def expected_move_bps(
    vol_per_bar: float,
    horizon_bars: int,
    label_kind: str = "direction",
    barrier_k: float = 1.0,
    barrier_min_bps: float = 0.0,
) -> float:
    """Expected size of the move a position realises over ``horizon_bars`` (bps), from the past only.

    ``vol_per_bar`` is the standard deviation of one-bar log returns (the feature ``vol_64``).
    ``direction`` models (held h bars): for a random walk E|r_h| = sqrt(2/pi) * sigma * sqrt(h).
    ``barrier`` models exit at a barrier (:func:`hft.ml.labels.barrier_outcome`): the move is the
    barrier's half-width max(k * sigma * sqrt(h), min_bps).
    """
    if not math.isfinite(vol_per_bar) or vol_per_bar < 0:
        return math.nan
    h = math.sqrt(max(1, horizon_bars))
    if label_kind == "barrier":
        return max(barrier_k * vol_per_bar * h * 1e4, barrier_min_bps)
    return _SQRT_2_OVER_PI * vol_per_bar * h * 1e4


def expected_edge_bps(prob_up: float, move_bps: float) -> float:
    """Expected gross return (bps) of a long held over the horizon: (2p - 1) x expected move.

    A short's is the negative. With a calibrated ``prob_up`` this is the edge a trade must have
    to pay its costs.
    """
    return (2.0 * prob_up - 1.0) * move_bps


def round_trip_bps(settings: Settings) -> float:
    """Costs of one position, open and close (bps): taker fee and slippage, both sides.

    The bot sends market orders; :class:`hft.ml.metrics.Costs` charges the backtest the same.
    """
    return 2.0 * (float(settings.taker_fee_bps) + float(settings.slippage_bps))


def thresholds_force(buy_threshold: float, sell_threshold: float) -> bool:
    """Thresholds that accept every probability (buy <= 0 or sell >= 1): trade whatever the edge.

    The operator's (and the test harness's) "buy every bar"; the edge rule filters confident
    signals and has nothing to say then.
    """
    return buy_threshold <= 0.0 or sell_threshold >= 1.0


def model_move_bps(vol_per_bar: float | None, label: Mapping[str, Any]) -> float:
    """The expected move of a model's trade from its label configuration (version tags or metadata).

    ``label``: ``horizon`` (bars, default 1), ``label_kind`` (``direction``), ``barrier_k`` (1.0),
    ``barrier_min_bps`` (0): what ``hft train`` records on the model (a model from before issue 23
    item 1 has none: the 1-bar direction). NaN without a volatility (then the rule holds).
    """
    if vol_per_bar is None:
        return math.nan
    try:
        return expected_move_bps(
            float(vol_per_bar),
            int(label.get("horizon", 1) or 1),
            str(label.get("label_kind", "direction") or "direction"),
            float(label.get("barrier_k", 1.0) or 1.0),
            float(label.get("barrier_min_bps", 0.0) or 0.0),
        )
    except (TypeError, ValueError):
        return math.nan


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
    (:func:`hft.ml.metrics.backtest`) calls this function for every decision, the bot
    (:meth:`hft.trading.bot.TradingBot.signal_for`) for every bar. Thresholds that accept every
    probability (:func:`thresholds_force`) trade on the thresholds alone.
    """
    if not sell_threshold <= buy_threshold:
        raise ValueError(f"sell_threshold {sell_threshold} above buy_threshold {buy_threshold}")
    if prob_up >= buy_threshold:
        signal = Signal.BUY
    elif prob_up <= sell_threshold:
        signal = Signal.SELL
    else:
        return Signal.HOLD
    if move_bps is None or thresholds_force(buy_threshold, sell_threshold):
        return signal
    if not math.isfinite(move_bps):
        return Signal.HOLD  # no volatility estimate: no edge estimate, no trade
    edge = expected_edge_bps(prob_up, move_bps)
    if (edge if signal is Signal.BUY else -edge) <= cost_bps:
        return Signal.HOLD
    return signal


# --------------------------------------------------------------------------------------------
# the trade lifecycle: one implementation for the bot and the backtest (issue 23)
# --------------------------------------------------------------------------------------------


class Step(StrEnum):
    """Why :func:`lifecycle_step` answered what it did."""

    ENTRY = "entry"  # flat and a buy signal: open a position
    HORIZON_EXIT = "horizon_exit"  # held the model's horizon: close it
    HOLDING = "holding"  # a position is open and younger than the horizon
    EXITING = "exiting"  # its exit was sent and is not filled yet
    NO_SHORT = "no_short"  # flat and a sell signal: spot cannot short
    FLAT = "flat"  # flat and no signal


_INTERVAL_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def interval_ns(interval: str) -> int:
    """Length of a bar interval (``1m``, ``15m``, ``1h``, ``1d``) in nanoseconds."""
    try:
        n, unit = int(interval[:-1]), _INTERVAL_UNITS_S[interval[-1]]
    except (KeyError, ValueError, IndexError) as exc:
        raise ValueError(f"bad bar interval {interval!r}: use e.g. 1m, 15m, 1h") from exc
    if n <= 0:
        raise ValueError(f"bad bar interval {interval!r}")
    return n * unit * 1_000_000_000


def is_dust(quantity: float, price: float) -> bool:
    """Whether a holding is too small to be a position (below the minimum order notional)."""
    return quantity * price < _MIN_NOTIONAL


def bars_held(opened_ns: int, now_ns: int, bar_ns: int) -> int:
    """Whole bars between the entry decision and now, on the bar-close clock.

    Rounded to the nearest bar: the bot's decision time is its bar's close plus the time spent
    since the bar's last tick arrived (milliseconds), which must not cost a bar.
    """
    if bar_ns <= 0:
        raise ValueError(f"bar_ns must be > 0, got {bar_ns}")
    return int((now_ns - opened_ns + bar_ns // 2) // bar_ns)


def exit_due_ns(opened_ns: int, horizon_bars: int, bar_ns: int) -> int:
    """The close time of the bar at which a position opened at ``opened_ns`` is closed."""
    return opened_ns + max(1, int(horizon_bars)) * bar_ns


def lifecycle_step(
    signal: Signal,
    *,
    opened_ns: int | None,
    now_ns: int,
    horizon_bars: int,
    bar_ns: int,
    exiting: bool = False,
) -> tuple[Signal, Step]:
    """What the long-only book does on one closed bar: BUY (open), SELL (close all) or HOLD.

    ``signal``: :func:`signal_from_prob` of this bar; ``opened_ns``: the decision time of the open
    position's entry (None when flat); ``horizon_bars``: the model's horizon (the registry tag
    ``horizon``; at least 1); ``exiting``: the exit was sent and is waiting for its fill. A
    position is closed on the first bar at which it has been held ``horizon_bars`` bars, whatever
    the signal (the label the model learned is the move over exactly that long); a new one can
    open from the next bar on.
    """
    if opened_ns is not None:
        if exiting:
            return Signal.HOLD, Step.EXITING
        if bars_held(opened_ns, now_ns, bar_ns) >= max(1, int(horizon_bars)):
            return Signal.SELL, Step.HORIZON_EXIT
        return Signal.HOLD, Step.HOLDING
    if signal is Signal.BUY:
        return Signal.BUY, Step.ENTRY
    return Signal.HOLD, Step.NO_SHORT if signal is Signal.SELL else Step.FLAT


@dataclass(frozen=True)
class BookTrade:
    """One round trip of :func:`simulate_book`: entry at decision ``entry`` (an index), exit at ``exit_ns``."""

    entry: int
    entry_ns: int
    exit_ns: int


def simulate_book(
    times_ns: list[int],
    signals: list[Signal],
    horizon_bars: int,
    bar_ns: int,
) -> list[BookTrade]:
    """Run :func:`lifecycle_step` over one symbol's decisions in time order: the bot's book, offline.

    ``times_ns`` are decision (bar close) times, ascending; ``signals`` their
    :func:`signal_from_prob` answers. The bot is called on every bar; a bar without a decision
    here (a gap in the scored rows) still closes a position that is due at it, so a missing row
    never stretches a trade: the step is then called at the due bar with no signal. Positions
    still open after the last decision close at their due time (the caller knows their return).
    """
    trades: list[BookTrade] = []
    opened: tuple[int, int] | None = None  # (decision index, time) of the open position
    for i, (t, sig) in enumerate(zip(times_ns, signals, strict=True)):
        if opened is not None:
            due = exit_due_ns(opened[1], horizon_bars, bar_ns)
            if t > due:  # the due bar had no decision row: what the bot did on that bar
                action, _ = lifecycle_step(
                    Signal.HOLD, opened_ns=opened[1], now_ns=due, horizon_bars=horizon_bars, bar_ns=bar_ns
                )
                if action is Signal.SELL:
                    trades.append(BookTrade(opened[0], opened[1], due))
                    opened = None
        action, _ = lifecycle_step(
            sig,
            opened_ns=None if opened is None else opened[1],
            now_ns=int(t),
            horizon_bars=horizon_bars,
            bar_ns=bar_ns,
        )
        if action is Signal.SELL and opened is not None:
            trades.append(BookTrade(opened[0], opened[1], int(t)))
            opened = None
        elif action is Signal.BUY:
            opened = (i, int(t))
    if opened is not None:
        trades.append(BookTrade(opened[0], opened[1], exit_due_ns(opened[1], horizon_bars, bar_ns)))
    return trades


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
    hold_reason: str = "hold",
) -> Decision:
    """Turn the lifecycle's action into an order intent, or say why not (halted, loss limit, cooldown,
    limits).

    ``signal`` is what :func:`lifecycle_step` answered: BUY opens ``order_notional`` (within
    ``max_position_notional``), SELL closes the whole position; ``hold_reason`` is its reason
    when it answered HOLD (``holding``, ``exiting``, ``no_short``, ...).
    """
    if state is TradingState.HALTED:
        return Decision(None, "halted", state)
    if daily_pnl <= -limits.daily_loss_limit:
        return Decision(None, "daily_loss_limit", TradingState.HALTED)
    if signal is Signal.HOLD:
        return Decision(None, hold_reason, state)
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
        qty = position_qty  # the exit closes the position, whole (no dust left stranded)
    if qty <= 0:
        return Decision(None, "zero_quantity", state)
    return Decision(Intent(symbol, signal, qty, price, prob_up, now), "intent", state)
