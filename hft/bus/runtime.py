"""One runtime for the long-lived stream processes: the loop, the consumer, retries, the entry point.

Every process in ``streamers/`` is an entry point around one of these:

- :class:`Loop`: ``run_once`` until stopped, then ``finish`` (the work in hand) and ``close``;
  dependency errors named in ``transient`` are backed off and retried, never crashed on. The
  trading bot's Redis stream reader is such a loop.
- :class:`ConsumerLoop`: a :class:`Loop` that owns one Kafka consumer of a group: subscribe with
  assignment hooks, :meth:`ConsumerLoop.poll` (returns as soon as one message is there),
  :meth:`ConsumerLoop.commit` (a failed commit is logged and counted: the batch is redelivered,
  and every writer downstream is idempotent), consumer lag on a gauge, close (leaves the group).
  The tick ingestor and the feature calculator are such loops.
- :class:`DeadLetters`: the dead-letter topic, durable before the caller's offsets move on.
- :func:`hft.bus.retry.retry`: call until it succeeds, with full-jitter backoff, until stopped.
- :func:`run_main`: the entry point every process shares: arguments, settings, logging,
  SIGTERM/SIGINT → a clean stop, ``/metrics``, waiting for the database schema and the topics, and
  the exit codes (:data:`EXIT_OK`, :data:`EXIT_CONFIG` for a configuration the process cannot run
  with; a crash exits 1 and the supervisor restarts the process from its committed offsets).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from types import FrameType
from typing import Any, Protocol, TypeVar

from confluent_kafka import Message
from prometheus_client import Counter, Gauge, start_http_server

from hft import heap
from hft.bus.client import (
    TP,
    KafkaException,
    commit,
    consume_ready,
    good_messages,
    make_consumer,
    make_producer,
)
from hft.bus.client import report_lag as _report_lag
from hft.bus.retry import backoff_delays
from hft.bus.topics import ensure_topics
from hft.config import ConfigurationError, Settings, TransientError, get_settings
from hft.logs import setup_logging
from hft.schema.market_pb2 import DeadLetter
from hft.storage import db

try:
    import uvloop
except ImportError:  # not in the lock of a user's own install: asyncio's loop then
    uvloop = None  # type: ignore[assignment]

T = TypeVar("T")
log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_CONFIG = 2  # a configuration the process cannot run with: restarting will not help


class Loop:
    """``run_once`` until ``stop`` is set; transient dependency errors are backed off, not fatal."""

    name = "loop"
    transient: tuple[type[BaseException], ...] = (TransientError,)
    heartbeat: Gauge | None = None

    def __init__(self, stop: threading.Event | None = None) -> None:
        self.stop = stop or threading.Event()
        self.backoff = backoff_delays(0.5, 10.0)

    def run_once(self) -> int:
        """One round of work; return how many items it handled."""
        raise NotImplementedError

    def on_transient(self, exc: BaseException) -> None:
        """Called after a transient error was backed off (e.g. recreate what a restart lost)."""

    def finish(self) -> None:
        """After a clean stop: flush and commit the work in hand."""

    def close(self) -> None:
        """Release connections (always called, also after a crash)."""

    def run(self) -> None:
        """Loop until stopped; then finish and close."""
        failures = 0
        try:
            while not self.stop.is_set():
                if self.heartbeat is not None:
                    self.heartbeat.set(time.time())
                try:
                    self.run_once()
                    failures = 0
                except self.transient as exc:
                    wait = self.backoff(failures)
                    failures += 1
                    log.warning("%s: dependency unavailable, retrying in %.1fs: %s", self.name, wait, exc)
                    self.stop.wait(wait)
                    self.on_transient(exc)
            self.finish()
        finally:
            self.close()
            log.info("%s stopped", self.name)


class ConsumerLoop(Loop):
    """A :class:`Loop` around one Kafka consumer of ``group`` subscribed to ``topics``."""

    lag_gauge: Gauge | None = None
    commit_failures: Counter | None = None
    lag_every_s = 5.0

    def __init__(
        self,
        settings: Settings,
        group: str,
        topics: list[str],
        stop: threading.Event | None = None,
        **consumer_overrides: Any,
    ) -> None:
        super().__init__(stop)
        self.s = settings
        self.group = group
        self._last_lag = 0.0
        self.consumer = make_consumer(settings, group, f"{group}-{settings.port_base}", **consumer_overrides)
        self.consumer.subscribe(
            topics,
            on_assign=self._rebalance_assign,
            on_revoke=self._rebalance_revoke,
            on_lost=self._rebalance_revoke,
        )

    # ---- rebalance hooks (called inside poll, on the consumer's thread) ----------------------
    def _rebalance_assign(self, _consumer: Any, partitions: list[Any]) -> None:
        tps: set[TP] = {(p.topic, p.partition) for p in partitions}
        log.info("%s: partitions assigned: %s", self.name, sorted(p for _t, p in tps))
        self.on_assign(tps)

    def _rebalance_revoke(self, _consumer: Any, partitions: list[Any]) -> None:
        tps: set[TP] = {(p.topic, p.partition) for p in partitions}
        self.on_revoke(tps)
        log.info("%s: partitions revoked: %s", self.name, sorted(p for _t, p in tps))

    def on_assign(self, partitions: set[TP]) -> None:
        """Partitions this member now owns."""

    def on_revoke(self, partitions: set[TP]) -> None:
        """Partitions moving away (or lost): commit what is done with them, forget their state."""

    # ---- the consumer ------------------------------------------------------------------------
    def poll(self, max_messages: int, timeout_s: float) -> list[Message]:
        """Up to ``max_messages``, as soon as one is there (``timeout_s`` at most); errors logged."""
        msgs = good_messages(consume_ready(self.consumer, max_messages, timeout_s))
        if self.heartbeat is not None:
            self.heartbeat.set(time.time())
        return msgs

    def commit(self, next_offsets: dict[TP, int], asynchronous: bool = False) -> bool:
        """Commit the next offset to read per partition; False (logged, counted) when Kafka refused.

        ``asynchronous``: do not wait for the broker (a failure is logged from a later poll)."""
        if not next_offsets:
            return True
        try:
            commit(self.consumer, next_offsets, asynchronous)
            return True
        except KafkaException as exc:
            # what was handled is stored; a redelivery is harmless (every writer is idempotent)
            if self.commit_failures is not None:
                self.commit_failures.inc()
            log.warning(
                "%s: offset commit failed (will be re-read, writes are idempotent): %s", self.name, exc
            )
            return False

    def report_lag(self) -> None:
        """Set the lag gauge per partition, at most every ``lag_every_s``."""
        now = time.monotonic()
        if self.lag_gauge is None or now - self._last_lag < self.lag_every_s:
            return
        self._last_lag = now
        _report_lag(self.consumer, self.lag_gauge)

    def close(self) -> None:
        """Leave the group (the revoke hook runs first)."""
        self.consumer.close()


class DeadLetters:
    """The dead-letter topic: each bad message with its reason, acknowledged before returning."""

    def __init__(
        self, settings: Settings, client_id: str, stream: str, counter: Counter | None = None
    ) -> None:
        self.s = settings
        self.client_id = client_id
        self.stream = stream
        self.counter = counter
        self._producer: Any = None

    def send(self, bad: list[tuple[bytes, str]], stop: threading.Event) -> None:
        """Publish and wait for Kafka's acknowledgement; TransientError when stopped before it came."""
        if not bad:
            return
        if self._producer is None:
            self._producer = make_producer(self.s, self.client_id)
        now = time.time_ns()
        for raw, reason in bad:
            dl = DeadLetter(reason=reason, raw=raw, receive_time_ns=now, stream=self.stream)
            self._producer.produce(self.s.topic_dlq, dl.SerializeToString())
        while self._producer.flush(30):
            log.warning("dead letters not yet acknowledged by Kafka; waiting")
            if stop.is_set():
                raise TransientError("stopped with unacknowledged dead letters")
        if self.counter is not None:
            self.counter.inc(len(bad))
        log.warning("dead-lettered %d messages, first reason: %s", len(bad), bad[0][1])

    def close(self) -> None:
        """Flush what is left (10 s at most)."""
        if self._producer is not None:
            self._producer.flush(10)


def _parser(description: str, metrics_port: str | None) -> argparse.ArgumentParser:
    """The arguments every stream process takes (``--no-metrics``, ``--metrics-port`` when it serves /metrics)."""
    p = argparse.ArgumentParser(description=description)
    if metrics_port:
        p.add_argument("--no-metrics", action="store_true", help="do not serve /metrics (benchmarks, tests)")
        p.add_argument(
            "--metrics-port", type=int, default=None, help=f"instead of settings.port('{metrics_port}')"
        )
    return p


class Runnable(Protocol):
    """What :func:`run_main` runs."""

    def run(self) -> None: ...


def run_main(
    name: str,
    description: str,
    build: Callable[[argparse.Namespace, Settings, threading.Event], Runnable],
    argv: list[str] | None = None,
    *,
    metrics_port: str | None = None,
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
    needs_schema: bool = True,
    needs_topics: bool = True,
    quiet_loggers: Iterable[str] = (),
) -> int:
    """The entry point of a stream process; return its exit code.

    ``build(args, settings, stop)`` makes the process once the database schema is at head and the
    topics exist; SIGTERM/SIGINT set ``stop``, and the process finishes the batch in hand.
    """
    p = _parser(description, metrics_port)
    if add_arguments is not None:
        add_arguments(p)
    args = p.parse_args(argv)
    settings = get_settings()
    setup_logging(settings.log_level, name)
    for logger in quiet_loggers:
        logging.getLogger(logger).setLevel(logging.WARNING)
    stop = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: finishing the batch in hand", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        if metrics_port and not args.no_metrics:
            start_http_server(args.metrics_port or settings.port(metrics_port), addr=settings.bind_host)
        if needs_schema:
            db.migrate_when_ready(settings, stop)
        if needs_topics:
            ensure_topics(settings)  # subscribed topics exist (created with their settings if missing)
        if stop.is_set():
            return EXIT_OK
        process = build(args, settings, stop)
        heap.freeze()  # what start-up loaded: out of the collector's way (docs/bench.md finding 10)
        process.run()
    except ConfigurationError as exc:
        log.error("%s", exc)
        return EXIT_CONFIG
    return EXIT_OK


def run_event_loop(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on uvloop (in the lock through uvicorn[standard]) where it is installed.

    A WebSocket frame costs the market producer ~2-3 us less of CPU on uvloop than on asyncio's
    selector loop (8.5-9.8 vs 11.8 us per frame received and decoded, docs/bench.md Left 3).
    """
    if uvloop is None:
        return asyncio.run(main)
    return uvloop.run(main)


def run_async_main(
    name: str,
    description: str,
    run: Callable[[Settings, asyncio.Event], Awaitable[int]],
    argv: list[str] | None = None,
    *,
    metrics_port: str | None = None,
) -> int:
    """:func:`run_main` for an asyncio process: ``run(settings, stop)`` returns the exit code."""
    p = _parser(description, metrics_port)
    args = p.parse_args(argv)
    settings = get_settings()
    setup_logging(settings.log_level, name)
    if metrics_port and not args.no_metrics:
        port = args.metrics_port or settings.port(metrics_port)
        try:
            start_http_server(port, addr=settings.bind_host)
        except OSError as exc:
            log.error("metrics port %d: %s", port, exc)
            return 1

    async def _main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        return await run(settings, stop)

    heap.freeze()  # what start-up loaded: out of the collector's way (docs/bench.md finding 10)
    try:
        return run_event_loop(_main())
    except ConfigurationError as exc:
        log.error("%s", exc)
        return EXIT_CONFIG
