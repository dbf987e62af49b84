"""The stack heals itself: a stack service that crashes (SIGKILL) is restarted without a hand
(``Stack.heal``, which ``hft stack watch`` runs every 2 s under supervisord), and one stopped on
purpose stays stopped."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import psycopg
import pytest
import redis

from hft.config import Settings
from hft.devstack.stack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.faults]


def _sigkill(stack: Stack, name: str, group: bool = False) -> int:
    """SIGKILL the service's process (``group``: and every process it started, e.g. MLflow's
    ``mlflow server`` and its uvicorn, which would otherwise go on serving as an orphan)."""
    pid = int(stack.pidfile(name).read_text().strip())
    if group:
        os.killpg(pid, signal.SIGKILL)
    else:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while not stack.service(name).crashed():
        assert time.monotonic() < deadline, f"{name} (pid {pid}) still alive after SIGKILL"
        time.sleep(0.05)
    return pid


def _heal_until_healthy(stack: Stack, name: str, timeout: float = 90) -> list[str]:
    restarted: list[str] = []
    deadline = time.monotonic() + timeout
    while not stack.service(name).healthy():
        assert time.monotonic() < deadline, f"{name} not back after {timeout:.0f}s; restarted {restarted}"
        restarted += stack.heal()
        time.sleep(0.5)
    return restarted


def test_a_sigkilled_redis_and_postgres_come_back_with_their_data(
    stack: Any, stack_settings: Settings
) -> None:
    st = Stack(stack_settings)
    r = redis.Redis.from_url(stack_settings.redis_dsn)
    r.set("heal-test", "kept")
    r.execute_command("BGREWRITEAOF")  # the key is in the AOF before the kill (fsync everysec otherwise)
    time.sleep(1.5)
    _sigkill(st, "redis")
    assert not st.redis.healthy()
    assert _heal_until_healthy(st, "redis") == ["redis"]
    assert r.get("heal-test") == b"kept"  # AOF: what Redis held survives a crash

    _sigkill(st, "postgres")
    assert _heal_until_healthy(st, "postgres", timeout=120) == ["postgres"]
    with psycopg.connect(stack_settings.database_url(driver="postgresql"), connect_timeout=5) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == (stack_settings.postgres_db,)
    assert st.heal() == []  # nothing else was down


def test_a_service_stopped_on_purpose_stays_stopped(stack: Any, stack_settings: Settings) -> None:
    st = Stack(stack_settings)
    st.redis.stop()
    try:
        assert not st.redis.crashed()
        assert st.heal() == []
        assert not st.redis.healthy()
    finally:
        st.redis.start()


def test_the_watchdog_runs_under_the_supervisor(stack_settings: Settings) -> None:
    from hft.devstack.supervisor import PROCESSES

    spec = next(p for p in PROCESSES if p.name == "stack-watchdog")
    assert spec.enabled(stack_settings)
    assert spec.command(stack_settings)[-2:] == ["stack", "watch"]


def test_a_sigkilled_broker_and_mlflow_come_back_with_their_data(
    stack: Any, stack_settings: Settings
) -> None:
    """Kafka keeps the messages it acknowledged (acks=all, flushed by the JVM's page cache before the
    kill) and MLflow keeps its registry and its users (the admin login is in basic_auth.db)."""
    import uuid

    import httpx

    from hft.bus.client import make_consumer, make_producer
    from hft.bus.topics import ensure_topics

    st = Stack(stack_settings)
    topic = f"heal-{uuid.uuid4().hex[:8]}"
    ensure_topics(stack_settings, extra={topic: (1, {})})
    producer = make_producer(stack_settings, "test-heal")
    for i in range(10):
        producer.produce(topic, f"m{i}".encode(), b"k")
    assert producer.flush(30) == 0
    time.sleep(1.0)  # the log segment written out of the JVM (a SIGKILL keeps the OS page cache)

    _sigkill(st, "kafka")
    assert _heal_until_healthy(st, "kafka", timeout=120) == ["kafka"]
    old = int(st.pidfile("mlflow").read_text())
    _sigkill(st, "mlflow")  # the CLI only: its uvicorn, orphaned, goes on serving until the heal
    assert st.heal() == ["mlflow"]  # the orphan reaped, a new server started
    assert int(st.pidfile("mlflow").read_text()) != old
    assert not st.service("mlflow").crashed()
    assert st.service("mlflow").healthy()
    assert st.heal() == []

    consumer = make_consumer(stack_settings, f"heal-{uuid.uuid4().hex[:8]}", "test-heal")
    try:
        consumer.subscribe([topic])
        got: list[bytes] = []
        deadline = time.monotonic() + 60
        while len(got) < 10 and time.monotonic() < deadline:
            got += [m.value() for m in consumer.consume(10, timeout=0.5) if m.error() is None]
    finally:
        consumer.close()
    assert got == [f"m{i}".encode() for i in range(10)]

    api = f"{stack_settings.mlflow_uri}/api/2.0/mlflow/registered-models/search"
    assert httpx.get(api, auth=stack_settings.mlflow_auth(), timeout=10).status_code == 200
    assert httpx.get(api, timeout=10).status_code == 401
