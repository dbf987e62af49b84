"""The bot's decision step on the real stack: live model server, PostgreSQL, a real Celery worker.

Thresholds are set so every prediction is a buy (the model's probability is whatever it is);
what is under test is the path from a closed bar to a filled intent, the kill switch and the
daily loss limit.
"""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, text

from hft.config import Settings
from hft.trading.bot import BarEvent, TradingBot, bar_event_from_stream
from hft.trading.strategy import TradingState

pytestmark = pytest.mark.integration


def _bot(
    settings: Settings, engine: Engine, api: str, worker: Any, sent: list[str], **overrides: Any
) -> TradingBot:
    s = settings.model_copy(
        update={"buy_threshold": 0.0, "sell_threshold": 0.0, "cooldown_s": 0.0, **overrides}
    )
    client = httpx.Client(base_url=api, timeout=5)

    def predict(symbol: str) -> dict[str, Any]:
        r = client.post("/predict", json={"symbol": symbol})
        r.raise_for_status()
        return dict(r.json())

    def enqueue(intent_id: str) -> None:
        sent.append(intent_id)
        worker.send_task("orders.simulate", args=[intent_id])

    return TradingBot(s, engine, predict, enqueue, time.time_ns)


def _event(trade: Any) -> BarEvent:
    close = datetime.fromtimestamp(trade.trade_time_ms / 1000, UTC)
    return BarEvent("BTCUSDT", float(trade.price), close, time.time_ns() - 1_000_000)


def _wait_filled(engine: Engine, intent_id: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    status = "pending"
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            status = conn.execute(
                text("SELECT status FROM trading.intents WHERE id = :i"), {"i": intent_id}
            ).scalar_one()
        if status != "pending":
            return str(status)
        time.sleep(0.2)
    return str(status)


def test_closed_bar_becomes_a_filled_intent(
    clean_book: Engine, btc_trades: list[Any], api_server: str, celery_worker: Any, serving_settings: Settings
) -> None:
    sent: list[str] = []
    bot = _bot(serving_settings, clean_book, api_server, celery_worker, sent)
    result = bot.on_bar(_event(btc_trades[200]))
    assert result.decision.reason == "intent"
    assert result.intent_id == sent[0]
    assert result.tick_to_signal_ns is not None
    assert 0 < result.tick_to_signal_ns < 5e9
    assert _wait_filled(clean_book, sent[0]) == "filled"
    with clean_book.connect() as conn:
        row = conn.execute(
            text(
                "SELECT f.fill_time, f.market_price, f.fee, i.decided_at, i.model_version FROM trading.fills f "
                "JOIN trading.intents i ON i.id = f.intent_id"
            )
        ).one()
    assert row.fill_time >= row.decided_at + timedelta(milliseconds=serving_settings.order_latency_ms)
    assert row.fee > 0
    assert row.model_version == result.prediction["model_version"]


def test_halt_stops_intents_at_once_and_resume_restarts(
    clean_book: Engine, btc_trades: list[Any], api_server: str, celery_worker: Any, serving_settings: Settings
) -> None:
    sent: list[str] = []
    bot = _bot(serving_settings, clean_book, api_server, celery_worker, sent)
    hft = str(Path(sys.executable).with_name("hft"))
    subprocess.run([hft, "bot", "halt", "--reason", "test"], check=True, capture_output=True)
    halted = bot.on_bar(_event(btc_trades[300]))
    assert halted.decision.reason == "halted"
    assert halted.intent_id is None
    status = subprocess.run([hft, "bot", "status"], check=True, capture_output=True, text=True).stdout
    assert "halted" in status
    subprocess.run([hft, "bot", "resume"], check=True, capture_output=True)
    assert bot.on_bar(_event(btc_trades[400])).intent_id is not None
    assert len(sent) == 1


def test_daily_loss_limit_halts_the_bot(
    clean_book: Engine, btc_trades: list[Any], api_server: str, celery_worker: Any, serving_settings: Settings
) -> None:
    sent: list[str] = []
    # a loss limit smaller than one order's fee: the first fill alone breaches it
    bot = _bot(serving_settings, clean_book, api_server, celery_worker, sent, daily_loss_limit=0.01)
    first = bot.on_bar(_event(btc_trades[100]))
    assert first.intent_id is not None
    assert _wait_filled(clean_book, first.intent_id) == "filled"
    second = bot.on_bar(_event(btc_trades[500]))
    assert second.decision.reason == "daily_loss_limit"
    assert second.intent_id is None
    with clean_book.connect() as conn:
        state = conn.execute(text("SELECT state, reason FROM trading.bot_state")).one()
    assert (state.state, state.reason) == (TradingState.HALTED.value, "daily_loss_limit")
    assert bot.on_bar(_event(btc_trades[600])).decision.reason == "halted"


def test_stream_entry_parses_to_a_bar_event(btc_trades: list[Any]) -> None:
    fields = {
        b"symbol": b"BTCUSDT",
        b"interval": b"15m",
        b"open_time_ns": b"1723160700000000000",
        b"feature_time_ns": b"1723161600000000000",
        b"close_receive_time_ns": b"1723161600100000000",
        b"published_ns": b"1",
        b"has_features": b"1",
    }
    ev = bar_event_from_stream(
        fields, lambda s, i, t: 61000.0 if t == datetime(2024, 8, 8, 23, 45, tzinfo=UTC) else None
    )
    assert ev == BarEvent("BTCUSDT", 61000.0, datetime(2024, 8, 9, tzinfo=UTC), 1723161600100000000)
    assert bar_event_from_stream({**fields, b"has_features": b"0"}, lambda *a: 1.0) is None
    # the calculator announces the close: no lookup, and the price of the trades the bar was built from
    announced = bar_event_from_stream({**fields, b"close": b"61012.5"}, lambda *a: None)
    assert announced == BarEvent("BTCUSDT", 61012.5, datetime(2024, 8, 9, tzinfo=UTC), 1723161600100000000)


def test_the_bot_trades_the_backtests_book_on_a_real_database(
    clean_book: Engine, btc_trades: list[Any], stack_settings: Settings
) -> None:
    """Issue 23: one sequence of bars (times, closes, probabilities, expected moves) through
    ``hft evaluate``'s backtest and through the bot's ``on_bar`` on the real trading database, each
    intent filled by the worker's fill path: the same entries and exits, bar for bar.

    Long-only, one position at a time, closed after the model's horizon (3 bars, from the version's
    ``horizon``) whatever the signal then; a sell signal while flat opens nothing, one while holding
    closes nothing. A new :class:`TradingBot` decides every bar, so the entry time can only come from
    the database (what a restarted bot sees). The model server fails on bars 3 and 6: the exit due at
    bar 3 needs no score and happens; bar 6 (flat) raises as before. The bot before issue 23 sold on the sell signal of bar 1
    and never exited at the horizon: this test fails on it.
    """
    import numpy as np

    from hft.ml import metrics as M
    from hft.trading.store import FillParams, execute_intent

    s = stack_settings.model_copy(
        update={
            "bar_interval": "1m",
            "buy_threshold": 0.55,
            "sell_threshold": 0.45,
            "cooldown_s": 0.0,
            "daily_loss_limit": 1e9,
        }
    )
    h, bar_ns = 3, 60 * 10**9
    first = datetime(2024, 8, 8, 23, 55, tzinfo=UTC)  # the recorded trades run 23:54:15 .. 00:05:05
    closes_at = [first + timedelta(minutes=i) for i in range(11)]
    close = np.array(
        [
            float([t for t in btc_trades if t.trade_time_ms <= c.timestamp() * 1000][-1].price)
            for c in closes_at
        ]
    )
    # bar:        0    1    2    3    4     5    6    7    8    9    10
    p = np.array([0.7, 0.3, 0.8, 0.5, 0.7, 0.2, 0.5, 0.7, 0.3, 0.8, 0.6])
    moves = np.full(11, 100.0)
    moves[4] = 10.0  # p 0.7 on a 10 bps move cannot pay the 22 bps round trip: no entry at bar 4
    times = np.array([int(c.timestamp()) * 10**9 for c in closes_at], dtype=np.int64)
    held = np.full(11, np.nan)
    held[:-h] = close[h:] / close[:-h] - 1.0

    bt = M.backtest(
        p, held, times, M.Costs.from_settings(s), moves, h * bar_ns, np.array(["BTCUSDT"] * 11), bar_ns
    )
    backtest_trades = list(zip(bt["entry_times"], bt["exit_times"], strict=True))
    assert backtest_trades == [(times[0], times[3]), (times[7], times[10])]

    params = FillParams(s.order_latency_ms, s.slippage_bps, s.taker_fee_bps, s.starting_cash, max_wait_s=3)
    at: dict[str, int] = {}
    reasons = []
    for i, c in enumerate(closes_at):
        at["i"] = i

        def predict(symbol: str) -> dict[str, Any]:
            if at["i"] in (3, 6):  # the model server down: bar 3's exit needs no score, bar 6 has none
                raise RuntimeError("model server unreachable")
            return {"prob_up": float(p[at["i"]]), "model_name": "lifecycle-test", "model_version": "1"}

        def fill(intent_id: str) -> None:
            assert execute_intent(clean_book, intent_id, params, datetime.now(UTC)).outcome == "filled"

        bot = TradingBot(
            s,
            clean_book,
            predict,
            fill,
            time.time_ns,
            move_bps=lambda symbol, pred: float(moves[at["i"]]),
            horizon_bars=lambda name, version: h if (name, version) == ("lifecycle-test", "1") else None,
        )
        if i == 6:
            with pytest.raises(RuntimeError):
                bot.on_bar(BarEvent("BTCUSDT", float(close[i]), c))
            reasons.append("predict_failed")
            continue
        reasons.append(bot.on_bar(BarEvent("BTCUSDT", float(close[i]), c)).decision.reason)
    with clean_book.connect() as conn:
        intents = conn.execute(
            text(
                "SELECT side, decided_at, quantity, status FROM trading.intents WHERE symbol = 'BTCUSDT' "
                "ORDER BY decided_at"
            )
        ).all()
        qty = conn.execute(
            text("SELECT quantity FROM trading.positions WHERE symbol = 'BTCUSDT'")
        ).scalar_one()
    assert [r.status for r in intents] == ["filled"] * 4
    bot_trades = [
        (int(b.decided_at.timestamp()) * 10**9, int(s_.decided_at.timestamp()) * 10**9)
        for b, s_ in zip(intents[::2], intents[1::2], strict=True)
    ]
    assert [r.side for r in intents] == ["buy", "sell", "buy", "sell"]
    assert bot_trades == backtest_trades
    assert reasons == [
        "intent", "holding", "holding", "intent", "flat", "no_short", "predict_failed", "intent", "holding", "holding", "intent"
    ]  # fmt: skip
    # each exit closed the whole position
    assert [float(r.quantity) for r in intents[1::2]] == [float(r.quantity) for r in intents[::2]]
    assert float(qty) == 0.0
