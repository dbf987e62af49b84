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
