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
from hft.stack import child_env
from tests.integration.serving.conftest import TEST_MODEL

pytestmark = pytest.mark.integration
STREAM = "hft:bars:closed"


def _count(engine: Engine, status: str | None = None) -> int:
    with engine.connect() as conn:
        if status is None:
            return int(conn.execute(text("SELECT count(*) FROM trading.intents")).scalar_one())
        return int(conn.execute(text("SELECT count(*) FROM trading.intents WHERE status = :s"),
                                {"s": status}).scalar_one())


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
    r.xadd(STREAM, {"symbol": "BTCUSDT", "interval": "1m", "open_time_ns": open_ns,
                    "feature_time_ns": open_ns + 60_000_000_000, "close_receive_time_ns": now - 1_000_000,
                    "published_ns": now, "has_features": 1})


def test_bot_process_turns_closed_bars_into_fills_and_obeys_halt(
    clean_book: Engine, btc_trades: list[Any], api_server: str, celery_worker: Any, serving_settings: Settings
) -> None:
    s = serving_settings
    env = {**child_env(), "HFT_BUY_THRESHOLD": "0", "HFT_SELL_THRESHOLD": "0", "HFT_COOLDOWN_S": "0",
           "HFT_MODEL_NAME": TEST_MODEL, "HFT_API_URL": api_server}
    log = s.home_dir / "logs" / "test-trading-bot.log"
    r = redis.Redis.from_url(s.redis_dsn)
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "streamers.trading_bot"], stdout=out,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
    hft = str(Path(sys.executable).with_name("hft"))
    try:
        assert _wait(lambda: _has_group(r), 60), log.read_text()[-2000:]
        _bar(r, 1)
        assert _wait(lambda: _count(clean_book, "filled") == 1), log.read_text()[-2000:]
        metrics = f"http://{s.bind_host}:{s.port('metrics_trading_bot')}/metrics"
        # the calculator announces a bar again after a retry or a restart: decided once only
        _bar(r, 1)
        assert _wait(lambda: 'trading_bot_bars_skipped_total{why="already_decided"} 1.0' in httpx.get(metrics).text), \
            log.read_text()[-2000:]
        assert _count(clean_book) == 1
        subprocess.run([hft, "bot", "halt", "--reason", "process test"], check=True, capture_output=True)
        _bar(r, 2)
        assert _wait(lambda: 'trading_bot_decisions_total{reason="halted"} 1.0' in httpx.get(metrics).text), \
            log.read_text()[-2000:]
        assert _count(clean_book) == 1
        text = httpx.get(metrics).text
        assert "trading_bot_tick_to_signal_seconds_count 2.0" in text
        # the three legs of tick→signal add up to it; the first is what _bar stamped (1 ms each)
        sums = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines()
                if line.startswith("trading_bot_") and line.split(" ")[0].endswith("_seconds_sum")}
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
