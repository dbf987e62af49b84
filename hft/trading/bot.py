"""The trading bot's decision step: prediction → signal → risk checks → persisted intent → queue.

The process loop (``streamers/trading_bot.py``) feeds :meth:`TradingBot.on_bar` one closed
bar at a time; everything it needs (the model server call, the queue, the clock) is
injected, so the step is testable on its own. The kill switch is the stored bot state,
read before every intent: ``hft bot halt`` stops new intents from the next bar on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from hft.config import Settings
from hft.trading import store
from hft.trading.strategy import (
    Decision,
    RiskLimits,
    Signal,
    Step,
    TradingState,
    decide,
    interval_ns,
    is_dust,
    lifecycle_step,
    round_trip_bps,
    signal_from_prob,
    thresholds_force,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BarEvent:
    """A closed bar: the symbol, its close price and times, and when its last tick was received."""

    symbol: str
    close: float
    close_time: datetime
    receive_time_ns: int | None = None


def bar_event_from_stream(
    fields: dict[bytes, bytes], close: Callable[[str, str, datetime], float | None]
) -> BarEvent | None:
    """Turn an ``hft:bars:closed`` stream entry into a BarEvent (None when it has no features).

    The entry's ``close`` is the price; ``close(symbol, interval, open_time)`` finds it for an
    entry without one (announced by an older calculator).
    """
    f = {k.decode(): v.decode() for k, v in fields.items()}
    if f.get("has_features", "1") == "0":
        return None
    symbol, interval = f["symbol"], f.get("interval", "")
    open_time = datetime.fromtimestamp(int(f["open_time_ns"]) / 1e9, UTC)
    price = float(f["close"]) if f.get("close") else close(symbol, interval, open_time)
    if price is None:
        return None
    receive = int(f.get("close_receive_time_ns") or 0) or None
    return BarEvent(symbol, price, datetime.fromtimestamp(int(f["feature_time_ns"]) / 1e9, UTC), receive)


@dataclass(frozen=True)
class StepResult:
    """What one bar led to: the prediction, the decision, the intent id and the tick-to-signal latency."""

    prediction: dict[str, Any]
    signal: Signal
    decision: Decision
    intent_id: str | None
    tick_to_signal_ns: int | None
    step: Step | None = None  # what the trade lifecycle said (entry, horizon_exit, holding, ...)


class TradingBot:
    """One decision per closed bar and symbol."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        predict: Callable[[str], dict[str, Any]],
        enqueue: Callable[[str], None],
        clock_ns: Callable[[], int],
        move_bps: Callable[[str, dict[str, Any]], float] | None = None,
        horizon_bars: Callable[[str, str], int | None] | None = None,
    ) -> None:
        self.s = settings
        self.engine = engine
        self.predict = predict
        self.enqueue = enqueue
        self.clock_ns = clock_ns
        self.limits = RiskLimits.from_settings(settings)
        # (symbol, prediction) -> expected move of the model's trade (bps); None: thresholds alone
        self.move_bps = move_bps
        self.cost_bps = round_trip_bps(settings)
        # (model name, version) -> the model's horizon in bars (its registry tag ``horizon``); None:
        # unknown now (the registry down). Without one: settings.label_horizon for every model.
        self.horizon_bars = horizon_bars
        self.bar_ns = interval_ns(settings.bar_interval)

    def horizon_of(self, model_name: str, model_version: str) -> int | None:
        """The horizon (bars) of the model that opened a position: the time exit's clock."""
        if self.horizon_bars is None:
            return int(self.s.label_horizon)
        return self.horizon_bars(model_name, model_version)

    def signal_for(self, symbol: str, prediction: dict[str, Any]) -> Signal:
        """The signal of one prediction: :func:`hft.trading.strategy.signal_from_prob`, the rule of
        ``hft evaluate``'s backtest, with the expected move at the model's horizon and the round trip.

        The move is looked up only when the thresholds alone would trade (it costs a feature read).
        """
        prob = float(prediction["prob_up"])
        buy, sell = self.s.buy_threshold, self.s.sell_threshold
        signal = signal_from_prob(prob, buy, sell)
        if signal is Signal.HOLD or self.move_bps is None or thresholds_force(buy, sell):
            return signal
        return signal_from_prob(
            prob, buy, sell, move_bps=self.move_bps(symbol, prediction), cost_bps=self.cost_bps
        )

    def on_bar(self, bar: BarEvent) -> StepResult:
        """Ask the model server, decide under the limits and the stored state, persist and queue the intent.

        When the model server fails (``predict`` raises), the bar still closes a position whose
        horizon has passed (the exit needs no score, and the backtest closes it at that bar); any
        other bar re-raises the error, as before.
        """
        predict_error: Exception | None = None
        try:
            prediction = self.predict(bar.symbol)
            prob = float(prediction["prob_up"])
            signal = self.signal_for(bar.symbol, prediction)
        except Exception as exc:  # no score for this bar: a position due now still closes (below)
            prediction, prob, signal, predict_error = {}, float("nan"), Signal.HOLD, exc
        decided_ns = self.clock_ns()
        latency = decided_ns - bar.receive_time_ns if bar.receive_time_ns else None
        # the decision on the market's clock (the replay exchange replays recorded time): the bar's
        # close plus the time spent since its closing tick arrived; fills look for trades after it
        now = bar.close_time + timedelta(microseconds=max(latency or 0, 0) / 1000)
        intent_id: str | None = None
        with self.engine.begin() as conn:
            state = store.get_bot_state(conn)
            qty = store.position_qty(conn, bar.symbol)
            last = store.last_intent_at(conn, bar.symbol)
            day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
            marks = {bar.symbol: bar.close}
            for sym in store.positions(conn):
                if sym not in marks:
                    t = store.last_trade(conn, sym)
                    if t is not None:
                        marks[sym] = t.price
            pnl_today = store.daily_pnl(conn, day_start, marks)
            # the trade lifecycle (hft.trading.strategy.lifecycle_step, the backtest's own): enter when
            # flat on a buy signal, close the whole position once held the horizon of the model that
            # opened it; the entry's time comes from the stored intents (it survives a restart)
            entry = store.open_entry(conn, bar.symbol)
            opened_ns: int | None = None
            horizon: int | None = 1
            if entry.decided_at is not None:
                opened_ns = _ns(entry.decided_at)
                horizon = self.horizon_of(entry.model_name, entry.model_version)
            elif not entry.exiting and not is_dust(qty, bar.close):
                opened_ns = 0  # held, entry unknown (bought before the lifecycle): due at once
                horizon = self.horizon_of(
                    str(prediction.get("model_name", "")), str(prediction.get("model_version", ""))
                )
            step: Step | None = None
            if horizon is None:  # the model's horizon cannot be read now: keep the position, ask next bar
                action, why = Signal.HOLD, "horizon_unknown"
            else:
                action, step = lifecycle_step(
                    signal,
                    opened_ns=opened_ns,
                    now_ns=_ns(now),
                    horizon_bars=horizon,
                    bar_ns=self.bar_ns,
                    exiting=entry.exiting,
                )
                why = step.value
            if predict_error is not None and action is not Signal.SELL:
                raise predict_error  # nothing to do without a score (nothing written yet)
            if predict_error is not None:
                log.warning(
                    "%s: no score (%s); the position due at this bar closes", bar.symbol, predict_error
                )
            decision = decide(
                symbol=bar.symbol,
                signal=action,
                prob_up=prob,
                price=bar.close,
                position_qty=qty,
                state=state.state,
                last_intent_at=last,
                now=now,
                daily_pnl=pnl_today,
                limits=self.limits,
                hold_reason=why,
            )
            if decision.state is not state.state:
                store.set_bot_state(conn, decision.state, decision.reason, "bot", now)
                log.warning("bot state %s -> %s (%s)", state.state, decision.state, decision.reason)
            if decision.intent is not None:
                feature_time = prediction.get("feature_time")
                intent_id = str(
                    store.insert_intent(
                        conn,
                        decision.intent,
                        model_name=str(prediction.get("model_name", "")),
                        model_version=str(prediction.get("model_version", "")),
                        feature_time=datetime.fromisoformat(feature_time)
                        if isinstance(feature_time, str)
                        else None,
                        tick_receive_ns=bar.receive_time_ns,
                    )
                )
        if intent_id is not None:
            self.enqueue(intent_id)  # after commit: the worker must find the row
        return StepResult(prediction, signal, decision, intent_id, latency, step)


def _ns(t: datetime) -> int:
    """A timezone-aware time in integer nanoseconds since the epoch (microsecond precision)."""
    delta = t - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def set_state(engine: Engine, state: TradingState, reason: str, by: str, now: datetime | None = None) -> None:
    """Set the bot's state (the kill switch of ``hft bot halt|resume``)."""
    with engine.begin() as conn:
        store.set_bot_state(conn, state, reason, by, now or datetime.now(UTC))
