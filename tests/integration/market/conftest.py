"""Fixtures of the market integration tests: the replay exchange and the market producer as the
supervisor runs them (``hft exchange``, ``python -m streamers.market_producer``), against the
stack's Apache Kafka.

They run on a port base of their own (the stack's + 200) so that a supervisor-run exchange or
producer from another test cannot hold their ports, and write to topics of their own.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from hft.config import REPO_ROOT, Settings
from hft.devstack.host import child_env
from hft.market.ticks import DeadLetter, Tick

HFT = str(Path(sys.executable).with_name("hft"))


@dataclass
class Market:
    """One exchange + producer pair and its topics."""

    settings: Settings
    env: dict[str, str]
    topic: str
    dlq: str
    logs: Path

    @property
    def exchange_url(self) -> str:
        return f"http://{self.settings.bind_host}:{self.settings.port('exchange')}"

    @property
    def producer_metrics_url(self) -> str:
        return f"http://{self.settings.bind_host}:{self.settings.port('metrics_market_producer')}/metrics"


@pytest.fixture
def market(stack: object, stack_settings: Settings, tmp_path: Path) -> Market:
    """Settings and environment for one replay → producer run on fresh topics."""
    run = uuid.uuid4().hex[:8]
    topic, dlq = f"market_ticks_t{run}", f"market_ticks_t{run}.dlq"
    base = stack_settings.port_base + 200
    env = {
        **child_env(),
        "HFT_HOME": str(stack_settings.home_dir),
        "HFT_PORT_BASE": str(base),
        "HFT_MARKET": "replay",
        "HFT_TOPIC_TICKS": topic,
        "HFT_TOPIC_DLQ": dlq,
        "HFT_DATA_DIR": str(stack_settings.data_dir),
        "HFT_SYMBOLS": '["BTCUSDT","ETHUSDT"]',
        # the stack's Kafka, whose ports derive from the stack's own port base
        "HFT_KAFKA_BOOTSTRAP": stack_settings.kafka_bootstrap_servers(),
    }
    s = Settings(
        home=stack_settings.home_dir,
        port_base=base,
        data_dir=stack_settings.data_dir,
        market="replay",
        topic_ticks=topic,
        topic_dlq=dlq,
        kafka_bootstrap=stack_settings.kafka_bootstrap_servers(),
    )
    return Market(s, env, topic, dlq, tmp_path)


def _wait(check: Callable[[], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise TimeoutError(what)


@pytest.fixture
def start_exchange(market: Market) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start ``hft exchange`` (extra CLI flags allowed) and wait until it answers."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(*flags: str) -> subprocess.Popen[bytes]:
        log = open(market.logs / "exchange.log", "wb")  # noqa: SIM115 - lives as long as the process
        p = subprocess.Popen(
            [HFT, "exchange", "--metrics-port", "0", *flags],
            env=market.env,
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        procs.append(p)

        def up() -> bool:
            if p.poll() is not None:
                raise RuntimeError(f"exchange exited: {(market.logs / 'exchange.log').read_text()[-2000:]}")
            try:
                return httpx.get(f"{market.exchange_url}/control/status", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        _wait(up, "replay exchange up", 60)
        return p

    yield start
    for p in procs:
        _end(p)


@pytest.fixture
def start_producer(market: Market) -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    """Start the market producer as the supervisor does."""
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        log = open(market.logs / "producer.log", "wb")  # noqa: SIM115 - lives as long as the process
        p = subprocess.Popen(
            [sys.executable, "-m", "streamers.market_producer"],
            env=market.env,
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        procs.append(p)
        return p

    yield start
    for p in procs:
        _end(p)


def _end(p: subprocess.Popen[bytes]) -> None:
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)


def read_topic(
    settings: Settings, topic: str, until: int, timeout: float = 90, settle_s: float = 1.5
) -> list[tuple[bytes, bytes]]:
    """(key, value) of every message of a topic; stop once ``until`` arrived and nothing more comes."""
    from confluent_kafka import TopicPartition

    from hft.bus.client import make_consumer

    consumer = make_consumer(settings, f"read-{uuid.uuid4().hex[:8]}", "test-reader")
    try:
        deadline = time.monotonic() + 30
        parts: list[int] = []
        while not parts and time.monotonic() < deadline:
            md = consumer.list_topics(topic, timeout=5).topics.get(topic)
            parts = sorted(md.partitions) if md is not None and md.error is None else []
            if not parts:
                time.sleep(0.3)
        if not parts:
            return []
        consumer.assign([TopicPartition(topic, p, -2) for p in parts])  # -2: the beginning
        out: list[tuple[bytes, bytes]] = []
        deadline = time.monotonic() + timeout
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            batch = [m for m in consumer.consume(num_messages=5000, timeout=0.3) if m.error() is None]
            out.extend((m.key(), m.value()) for m in batch)  # type: ignore[misc]
            if batch:
                quiet_since = time.monotonic()
            elif len(out) >= until and time.monotonic() - quiet_since > settle_s:
                break
        return out
    finally:
        consumer.close()


def decode_ticks(messages: list[tuple[bytes, bytes]]) -> list[Tick]:
    """Parse Tick values (and check key = symbol on the way)."""
    ticks = []
    for key, value in messages:
        t = Tick()
        t.ParseFromString(value)
        assert key == t.symbol.encode()
        ticks.append(t)
    return ticks


def decode_dead_letters(messages: list[tuple[bytes, bytes]]) -> list[DeadLetter]:
    """Parse DeadLetter values."""
    out = []
    for _, value in messages:
        d = DeadLetter()
        d.ParseFromString(value)
        out.append(d)
    return out
