"""Fixtures for serving integration tests: the real stack, migrated, with real recorded trades."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from hft.config import Settings

TRADES_FILE = "trades/spot_BTCUSDT_trades_2024-08-08T2354Z_2024-08-09T0005Z.csv.gz"


@pytest.fixture(scope="session")
def trading_engine(stack: Any, stack_settings: Settings) -> Engine:
    """The market database, migrated to head."""
    from hft.storage.db import engine, migrate

    migrate(stack_settings)
    return engine(stack_settings)


@pytest.fixture(scope="session")
def btc_trades(trading_engine: Engine, stack_settings: Settings, data_dir: Path) -> list[Any]:
    """Real BTCUSDT spot trades (archive file) written to market.ticks through the storage writer."""
    from hft.market.replay import read_trade_file
    from hft.schema.market_pb2 import Tick
    from hft.storage.ticks import TickWriter

    trades = read_trade_file(data_dir / TRADES_FILE, "BTCUSDT")
    ticks = [
        Tick(symbol=t.symbol, trade_id=t.trade_id, price=float(t.price), quantity=float(t.quantity),
             buyer_is_maker=t.buyer_is_maker, trade_time_ns=t.trade_time_ms * 1_000_000,
             event_time_ns=t.event_time_ms * 1_000_000, receive_time_ns=t.trade_time_ms * 1_000_000,
             source=Tick.SOURCE_ARCHIVE, venue="binance-spot")
        for t in trades
    ]
    writer = TickWriter(stack_settings)
    try:
        writer.write(ticks)
    finally:
        writer.close()
    return trades


@pytest.fixture
def clean_book(trading_engine: Engine) -> Iterator[Engine]:
    """Empty trading tables (and the bot ACTIVE) before and after a test."""

    def wipe() -> None:
        with trading_engine.begin() as conn:
            conn.execute(text("TRUNCATE trading.fills, trading.orders, trading.intents, trading.positions, "
                              "trading.account, trading.reports RESTART IDENTITY CASCADE"))
            conn.execute(text("UPDATE trading.bot_state SET state = 'active', reason = 'test'"))

    wipe()
    yield trading_engine
    wipe()


@pytest.fixture(scope="session")
def celery_worker(trading_engine: Engine, stack_settings: Settings) -> Iterator[Any]:
    """A real Celery worker process (``workers.app``) on the test stack's Redis."""
    import os
    import signal
    import subprocess
    import sys
    import time

    log = stack_settings.home_dir / "logs" / "test-celery-worker.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    celery = Path(sys.executable).with_name("celery")
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [str(celery), "-A", "workers.app", "worker", "--pool", "threads", "--concurrency", "4",
             "--loglevel", "INFO", "-n", f"test-{stack_settings.port_base}@%h", "--without-gossip",
             "--without-mingle"],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "HFT_FILL_MAX_WAIT_S": "3"},
            start_new_session=True,
        )
    from workers.app import app

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"celery worker exited: {log.read_text()[-2000:]}")
        replies = app.control.ping(timeout=0.5)
        if replies:
            break
    else:
        proc.kill()
        pytest.fail(f"celery worker not ready: {log.read_text()[-2000:]}")
    yield app
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
