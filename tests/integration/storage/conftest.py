"""Fixtures of the storage integration tests: real PostgreSQL (or TimescaleDB with HFT_TIMESCALE=1),
the embedded Apache Kafka, the real tick ingestor process.

Ticks come from the shared recorded trades through the project's importer
(``hft.market.replay.read_trade_file``) and its encoder (``hft.market.ticks.tick_from_trade``), produced
into the real ``market_ticks`` topic under test-only symbol names, so other tests' data sharing the
database and topic never mixes with the counts here.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hft.config import REPO_ROOT, Settings
from hft.devstack.host import child_env
from hft.market.replay import read_trade_file, trade_event
from hft.market.ticks import tick_from_trade
from hft.schema.market_pb2 import Tick
from hft.storage import db
from tests.kafka_helpers import send_ticks

GROUP = "tick-ingestor"
TRADE_FILES = {
    "BTC": "spot_BTCUSDT_trades_2024-08-08T2354Z_2024-08-09T0005Z.csv.gz",
    "ETH": "spot_ETHUSDT_trades_2024-08-08T2354Z_2024-08-09T0005Z.csv.gz",
    "UBTC": "usdm_BTCUSDT_trades_2024-08-08T2354Z_2024-08-08T2359Z.csv.gz",
}


@pytest.fixture(scope="session")
def store(stack: Any, stack_settings: Settings) -> Settings:
    """The test stack with the schema migrated (``HFT_TIMESCALE`` picks the backend)."""
    # Settings read HFT_TIMESCALE from the environment, so the stack and this agree on the backend
    db.migrate(stack_settings)
    return stack_settings


def unique_symbol(base: str) -> str:
    """A symbol name no other test uses: the real symbol plus a random suffix."""
    return f"{base}T{secrets.token_hex(3).upper()}"


def ticks_from_file(data_dir: Path, key: str, symbol: str) -> list[Tick]:
    """The recorded trades of one file as Ticks, renamed to ``symbol``."""
    trades = read_trade_file(data_dir / "trades" / TRADE_FILES[key], symbol=key)
    out = []
    for t in trades:
        tick = tick_from_trade(trade_event(t), receive_time_ns=time.time_ns(), venue="replay")
        tick.symbol = symbol
        out.append(tick)
    return out


def produce(settings: Settings, ticks: list[Tick], chunk: int = 0, pause_s: float = 0.0) -> None:
    """Send Ticks to the ticks topic (key = symbol) and wait for every ack."""
    send_ticks(settings, ticks, chunk=chunk, pause_s=pause_s)


def count_rows(settings: Settings, symbols: list[str]) -> tuple[int, int]:
    """(rows, distinct (symbol, trade_id)) in market.ticks for these symbols."""
    with db.connect(settings, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT (symbol, trade_id)) FROM market.ticks WHERE symbol = ANY(%s)",
            (symbols,),
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def stored_ids(settings: Settings, symbol: str) -> list[int]:
    """Trade ids stored for one symbol, ascending."""
    with db.connect(settings, autocommit=True) as conn:
        return [
            r[0]
            for r in conn.execute(
                "SELECT trade_id FROM market.ticks WHERE symbol = %s ORDER BY trade_id", (symbol,)
            )
        ]


def wait_until(check: Callable[[], bool], what: str, timeout: float = 90, interval: float = 0.2) -> None:
    """Poll until ``check`` is true or fail the test naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")


def group_caught_up(settings: Settings) -> Callable[[], bool]:
    """A check: the ingestor group's committed offsets reached the topic's end (as of now)."""
    from confluent_kafka import TopicPartition

    from hft.bus.client import make_consumer

    consumer = make_consumer(settings, GROUP, "test-group-check")
    md = consumer.list_topics(settings.topic_ticks, timeout=10).topics[settings.topic_ticks]
    tps = [TopicPartition(settings.topic_ticks, p) for p in md.partitions]
    ends = {tp.partition: consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in tps}

    def check() -> bool:
        committed = consumer.committed(tps, timeout=10)
        done = all(max(c.offset, 0) >= ends[c.partition] for c in committed)
        if done:
            consumer.close()
        return done

    return check


class IngestorProcess:
    """``python -m streamers.tick_ingestor`` as the supervisor runs it, in its own process group."""

    def __init__(self, settings: Settings, log_path: Path, *args: str) -> None:
        self.settings = settings
        self.log_path = log_path
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> IngestorProcess:
        env = {
            **child_env(),
            "HFT_HOME": str(self.settings.home_dir),
            "HFT_PORT_BASE": str(self.settings.port_base),
            "HFT_TIMESCALE": "1" if self.settings.timescale else "0",
            "PYTHONUNBUFFERED": "1",
        }
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamers.tick_ingestor", *self.args],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def kill(self, sig: int) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
        return self.proc.wait(timeout=60)

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        return self.kill(signal.SIGTERM)


@pytest.fixture
def ingestor(store: Settings, tmp_path: Path) -> Iterator[Callable[..., IngestorProcess]]:
    """Start tick ingestor processes; every one still running is stopped (SIGTERM) at teardown."""
    started: list[IngestorProcess] = []

    def start(*args: str) -> IngestorProcess:
        p = IngestorProcess(store, tmp_path / f"ingestor-{len(started)}.log", *args).start()
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


@pytest.fixture
def cleanup_symbols(store: Settings) -> Iterator[list[str]]:
    """Symbols a test wrote; their ticks and bars are deleted afterwards (the database is shared)."""
    symbols: list[str] = []
    yield symbols
    if symbols:
        with db.connect(store, autocommit=True) as conn:
            conn.execute("DELETE FROM market.ticks WHERE symbol = ANY(%s)", (symbols,))
            conn.execute("DELETE FROM market.bars WHERE symbol = ANY(%s)", (symbols,))
