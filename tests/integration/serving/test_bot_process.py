"""The trading-bot process (``python -m streamers.trading_bot``) wired to the real stack.

Closed-bar entries are added to ``hft:bars:closed`` exactly as the feature calculator writes
them; the bot calls the live model server, persists intents and the real worker fills them.
Thresholds 0/0 make every prediction a buy. A bar announced twice is decided once. After
``hft bot halt`` the next bar yields no intent.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import Engine, text

from hft.config import Settings
from hft.devstack.host import child_env
from tests.integration.serving.conftest import TEST_MODEL

pytestmark = pytest.mark.integration
STREAM = "hft:bars:closed"


def _count(engine: Engine, status: str | None = None) -> int:
    with engine.connect() as conn:
        if status is None:
            return int(conn.execute(text("SELECT count(*) FROM trading.intents")).scalar_one())
        return int(
            conn.execute(
                text("SELECT count(*) FROM trading.intents WHERE status = :s"), {"s": status}
            ).scalar_one()
        )


def _wait(check: Any, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


def _has_group(r: redis.Redis) -> bool:
    if not r.exists(STREAM):
        return False
    names = {g.get("name", g.get(b"name")) for g in r.xinfo_groups(STREAM)}
    return bool(names & {"trading-bot", b"trading-bot"})


def _bar(r: redis.Redis, minute: int) -> None:
    open_ns = int(datetime(2024, 8, 9, 0, minute, tzinfo=UTC).timestamp() * 1e9)
    now = time.time_ns()
    r.xadd(
        STREAM,
        {
            "symbol": "BTCUSDT",
            "interval": "1m",
            "open_time_ns": open_ns,
            "feature_time_ns": open_ns + 60_000_000_000,
            "close_receive_time_ns": now - 1_000_000,
            "published_ns": now,
            "has_features": 1,
        },
    )


def test_bot_process_turns_closed_bars_into_fills_and_obeys_halt(
    clean_book: Engine, btc_trades: list[Any], api_server: str, celery_worker: Any, serving_settings: Settings
) -> None:
    s = serving_settings
    env = {
        **child_env(),
        "HFT_BUY_THRESHOLD": "0",
        "HFT_SELL_THRESHOLD": "0",
        "HFT_COOLDOWN_S": "0",
        "HFT_MODEL_NAME": TEST_MODEL,
        "HFT_API_URL": api_server,
    }
    log = s.home_dir / "logs" / "test-trading-bot.log"
    r = redis.Redis.from_url(s.redis_dsn)
    if _has_group(r):  # left by an earlier session (Redis keeps it: AOF): this bot starts at the stream's end
        r.xgroup_destroy(STREAM, "trading-bot")
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamers.trading_bot"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    hft = str(Path(sys.executable).with_name("hft"))
    try:
        assert _wait(lambda: _has_group(r), 60), log.read_text()[-2000:]
        _bar(r, 1)
        assert _wait(lambda: _count(clean_book, "filled") == 1), log.read_text()[-2000:]
        metrics = f"http://{s.bind_host}:{s.port('metrics_trading_bot')}/metrics"
        # the calculator announces a bar again after a retry or a restart: decided once only
        _bar(r, 1)
        assert _wait(
            lambda: 'trading_bot_bars_skipped_total{why="already_decided"} 1.0' in httpx.get(metrics).text
        ), log.read_text()[-2000:]
        assert _count(clean_book) == 1
        subprocess.run([hft, "bot", "halt", "--reason", "process test"], check=True, capture_output=True)
        _bar(r, 2)
        assert _wait(lambda: 'trading_bot_decisions_total{reason="halted"} 1.0' in httpx.get(metrics).text), (
            log.read_text()[-2000:]
        )
        assert _count(clean_book) == 1
        text = httpx.get(metrics).text
        assert "trading_bot_tick_to_signal_seconds_count 2.0" in text
        # the three legs of tick→signal add up to it; the first is what _bar stamped (1 ms each)
        sums = {
            line.split(" ")[0]: float(line.split(" ")[1])
            for line in text.splitlines()
            if line.startswith("trading_bot_") and line.split(" ")[0].endswith("_seconds_sum")
        }
        legs = [sums[f"trading_bot_leg_{leg}_seconds_sum"] for leg in ("announce", "stream", "decide")]
        assert sum(legs) == pytest.approx(sums["trading_bot_tick_to_signal_seconds_sum"], abs=1e-6)
        assert legs[0] == pytest.approx(0.002, abs=1e-6)
        assert "trading_bot_leg_decide_seconds_count 2.0" in text
    finally:
        subprocess.run([hft, "bot", "resume"], check=False, capture_output=True)
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0


def _entry(symbol: str, minute: int) -> tuple[bytes, dict[bytes, bytes]]:
    open_ns = int(datetime(2024, 8, 9, 0, minute, tzinfo=UTC).timestamp() * 1e9)
    now = time.time_ns()
    return (
        f"{now}-0".encode(),
        {
            b"symbol": symbol.encode(),
            b"interval": b"1m",
            b"open_time_ns": str(open_ns).encode(),
            b"published_ns": str(now).encode(),
            b"has_features": b"1",
        },
    )


def test_bars_of_several_symbols_in_one_read_are_predicted_concurrently(
    api_server: str, serving_settings: Settings
) -> None:
    import threading

    from hft.trading.runner import BotProcess, PredictError

    s = serving_settings.model_copy(
        update={"api_url": api_server, "symbols": ["BTCUSDT", "SOLUSDT"], "model_name": TEST_MODEL}
    )
    bot = BotProcess(s, threading.Event())
    try:
        # the first bar is asked inline; the others start at once, each on its own connection
        bot.predict_ahead([_entry("BTCUSDT", 1), _entry("SOLUSDT", 1), _entry("DOGEUSDT", 1)])
        assert set(bot._ahead) == {"SOLUSDT"}  # DOGEUSDT is not a configured symbol
        with pytest.raises(PredictError, match="SOLUSDT"):  # no features online: the server's 404 arrives
            bot._predict("SOLUSDT")
        assert bot._ahead == {}
        assert 0.0 <= bot._predict("BTCUSDT")["prob_up"] <= 1.0  # inline
        # a symbol with two bars in the read is asked inline, in order; a decided bar is not asked
        bot._decided[("SOLUSDT", "1m")] = int(_entry("SOLUSDT", 5)[1][b"open_time_ns"])
        bot.predict_ahead([_entry("SOLUSDT", 2), _entry("BTCUSDT", 2), _entry("BTCUSDT", 3)])
        assert bot._ahead == {}
        bot.predict_ahead([_entry("SOLUSDT", 6), _entry("BTCUSDT", 6)])
        assert set(bot._ahead) == {"BTCUSDT"}
        bot.forget_ahead()
        assert bot._ahead == {}
    finally:
        bot._pool.shutdown(wait=True)
        bot.http.close()


def _destroy_groups(r: redis.Redis, streams: list[str]) -> None:
    for stream in streams:
        if r.exists(stream) and any(
            g.get("name", g.get(b"name")) in ("trading-bot", b"trading-bot") for g in r.xinfo_groups(stream)
        ):
            r.xgroup_destroy(stream, "trading-bot")


def test_the_bot_decides_on_the_apis_scored_entry_and_asks_predict_only_after_its_wait(
    clean_book: Engine, serving_settings: Settings
) -> None:
    """With predict-ahead the bot decides on the score the API announced (``hft:bars:scored``),
    without a request; a closed bar whose score does not come is asked of ``/predict`` after
    ``bot_score_wait_ms``. The model server here is a closed port, so every request fails: a
    decision on the scored entry proves no request was made, a failed one proves the fallback asked."""
    import threading

    from prometheus_client import REGISTRY

    from hft.trading.runner import BotProcess
    from hft.trading.scoring import SCORED_STREAM, Score, scored_entry

    def sample(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    # XRPUSDT: not among any API's symbols here, so a live API of another test announces nothing for it
    s = serving_settings.model_copy(
        update={
            "api_url": "http://127.0.0.1:9",
            "symbols": ["XRPUSDT"],
            "buy_threshold": 0.0,
            "sell_threshold": 0.0,
            "cooldown_s": 0.0,
            "api_predict_ahead": True,
            "bot_score_wait_ms": 2000.0,
        }
    )
    r = redis.Redis.from_url(s.redis_dsn)
    _destroy_groups(r, [STREAM, SCORED_STREAM])
    bot = BotProcess(s, threading.Event())
    sent: list[str] = []
    bot.bot.enqueue = sent.append  # no worker here: the intent id is what would go to Celery
    bot.ensure_group()
    try:
        open_ns = int(datetime(2024, 8, 9, 0, 10, tzinfo=UTC).timestamp() * 1e9)
        now = time.time_ns()
        closed = {
            b"symbol": b"XRPUSDT",
            b"interval": b"1m",
            b"open_time_ns": str(open_ns).encode(),
            b"feature_time_ns": str(open_ns + 60_000_000_000).encode(),
            b"close": b"150.5",
            b"close_receive_time_ns": str(now - 2_000_000).encode(),
            b"published_ns": str(now - 1_000_000).encode(),
            b"has_features": b"1",
        }
        scored0 = sample("trading_bot_predictions_total", source="scored")
        r.xadd(STREAM, closed)
        assert bot.run_once() == 0  # read and held: its score has not come
        assert len(bot._held) == 1
        waiting0 = sample("trading_bot_bars_skipped_total", why="already_waiting")
        r.xadd(STREAM, closed)  # the calculator announces the bar again (a retry): acked, still one wait
        assert bot.run_once() == 1
        assert len(bot._held) == 1
        assert sample("trading_bot_bars_skipped_total", why="already_waiting") == waiting0 + 1
        feature_time = datetime.fromtimestamp((open_ns + 60_000_000_000) / 1e9, UTC)
        r.xadd(
            SCORED_STREAM,
            scored_entry(closed, Score("XRPUSDT", 0.7, TEST_MODEL, "7", "fv", feature_time), now),
        )
        assert bot.run_once() == 1
        assert bot._held == {}
        assert len(sent) == 1
        assert sample("trading_bot_predictions_total", source="scored") == scored0 + 1
        with clean_book.connect() as conn:
            row = conn.execute(
                text("SELECT model_version, prob_up, ref_price FROM trading.intents WHERE id = :i"),
                {"i": sent[0]},
            ).one()
        assert (row.model_version, float(row.prob_up), float(row.ref_price)) == ("7", 0.7, 150.5)
        for stream in (STREAM, SCORED_STREAM):  # both entries acked
            assert r.xpending(stream, "trading-bot")["pending"] == 0, stream

        # the next bar's score never comes: after the wait the bot asks /predict (which fails here)
        failed0 = sample("trading_bot_decisions_total", reason="predict_failed")
        unreachable0 = sample("trading_bot_predict_errors_total", kind="unreachable")
        later = {**closed, b"open_time_ns": str(open_ns + 60_000_000_000).encode()}
        later[b"feature_time_ns"] = str(open_ns + 120_000_000_000).encode()
        later[b"published_ns"] = str(time.time_ns()).encode()
        r.xadd(STREAM, later)
        t0 = time.monotonic()
        while sample("trading_bot_decisions_total", reason="predict_failed") == failed0:
            assert time.monotonic() - t0 < 10, "the bar without a score was never asked of /predict"
            bot.run_once()
        assert time.monotonic() - t0 >= 2.0 * 0.9  # it waited for the score first
        assert sample("trading_bot_predict_errors_total", kind="unreachable") == unreachable0 + 1
        assert len(sent) == 1
        assert bot._held == {}
        assert r.xpending(STREAM, "trading-bot")["pending"] == 0
    finally:
        bot._pool.shutdown(wait=True)
        bot.http.close()
        _destroy_groups(r, [STREAM, SCORED_STREAM])
