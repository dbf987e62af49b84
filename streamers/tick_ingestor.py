"""Tick ingestor: Kafka ``market_ticks`` → ``market.ticks`` (+ 1m/15m bars), idempotent.

Run by the supervisor (``python -m streamers.tick_ingestor`` / ``hft run tick-ingestor``).
Consumer group ``tick-ingestor``; each polled batch is decoded, bad messages go to the
dead-letter topic with their reason, the rest are written by ``hft.storage.ticks.TickWriter``
in one transaction, and only then are the Kafka offsets committed. A fetch thread owns the
consumer and polls the next batch while the last one is written. A database error backs off
and retries the same batch (never skips it). SIGTERM finishes the batches in hand, commits, exits.
"""

from __future__ import annotations

import argparse
import logging
import queue
import signal
import sys
import threading
import time
from dataclasses import dataclass
from types import FrameType
from typing import Any

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from hft import heap
from hft.bus.client import (
    TP,
    KafkaException,
    commit,
    consume_ready,
    good_messages,
    make_consumer,
    make_producer,
    report_lag,
)
from hft.bus.topics import ensure_topics
from hft.config import ConfigurationError, Settings, TransientError, get_settings
from hft.logs import setup_logging
from hft.schema.market_pb2 import DeadLetter, Tick
from hft.storage import db
from hft.storage.ticks import TickWriter, decode_batch

log = logging.getLogger("streamers.tick_ingestor")
GROUP = "tick-ingestor"

ROWS_RECEIVED = Counter("tick_ingestor_rows_received", "Ticks taken from Kafka")
ROWS_WRITTEN = Counter("tick_ingestor_rows_written", "Ticks new to market.ticks (duplicates excluded)")
BARS = Counter("tick_ingestor_bars_upserted", "Bars recomputed from ticks and upserted")
DEAD = Counter("tick_ingestor_dead_lettered", "Messages sent to the dead-letter topic")
RETRIES = Counter("tick_ingestor_retries", "Batch writes retried after a database error")
COMMIT_FAILURES = Counter("tick_ingestor_commit_failures", "Offset commits that failed (batch redelivered)")
BATCH = Histogram(
    "tick_ingestor_batch_size",
    "Ticks per written batch",
    buckets=(1, 10, 50, 100, 500, 1000, 2500, 5000, 10000, 20000),
)
LATENCY = Histogram(
    "tick_ingestor_write_latency_seconds",
    "One batch: COPY, insert, bars, commit",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
LAG = Gauge("tick_ingestor_consumer_lag", "Messages behind the end of the topic", ["partition"])
HEARTBEAT = Gauge("tick_ingestor_heartbeat_timestamp_seconds", "Last loop heartbeat (unix time)")


@dataclass(frozen=True)
class _Batch:
    """One polled batch on its way from the fetch thread to the writer."""

    offsets: dict[TP, int]
    ticks: list[Tick]
    bad: list[tuple[bytes, str]]


class Ingestor:
    """The consume → write → commit loop, with fetching overlapped with writing."""

    def __init__(
        self,
        settings: Settings,
        batch_max: int = 5000,
        linger_ms: int = 50,
        lag_every_s: float = 5.0,
        depth: int = 2,
    ) -> None:
        self.s = settings
        self.batch_max = batch_max
        self.linger_ms = linger_ms
        self.lag_every_s = lag_every_s
        self.stop = threading.Event()
        self.writer = TickWriter(settings)
        self._producer: Any = None
        self._last_lag = 0.0
        self._batches: queue.Queue[_Batch] = queue.Queue(maxsize=depth)
        self._done: queue.SimpleQueue[dict[TP, int]] = queue.SimpleQueue()
        self._fetching = threading.Event()
        self._written = threading.Event()
        self._fetch_error: BaseException | None = None
        self.consumer = make_consumer(
            settings,
            GROUP,
            f"tick-ingestor-{settings.port_base}",
            # throughput: big fetches per partition; poll linger (below) batches small ones
            **{"max.partition.fetch.bytes": 4 * 1024 * 1024, "fetch.max.bytes": 32 * 1024 * 1024},
        )
        self.consumer.subscribe(
            [settings.topic_ticks],
            on_assign=_log_partitions("assigned"),
            on_revoke=_log_partitions("revoked"),
        )

    def _dead_letter(self, bad: list[tuple[bytes, str]]) -> None:
        if self._producer is None:
            self._producer = make_producer(self.s, f"tick-ingestor-dlq-{self.s.port_base}")
        now = time.time_ns()
        for raw, reason in bad:
            dl = DeadLetter(reason=reason, raw=raw, receive_time_ns=now, stream=f"kafka:{self.s.topic_ticks}")
            self._producer.produce(self.s.topic_dlq, dl.SerializeToString())
        # dead letters are durable before the offsets move on
        while self._producer.flush(30):
            log.warning("dead letters not yet acknowledged by Kafka; waiting")
            if self.stop.is_set():
                raise TransientError("stopped with unacknowledged dead letters")
        DEAD.inc(len(bad))
        log.warning("dead-lettered %d messages, first reason: %s", len(bad), bad[0][1])

    def _write_until_done(self, ticks: list[Any]) -> bool:
        """Write the batch, retrying with backoff on database errors; False when stopped first."""
        delay = 0.2
        while True:
            try:
                result = self.writer.write(ticks)
            except TransientError as exc:
                RETRIES.inc()
                log.warning("batch of %d not written, retrying in %.1fs: %s", len(ticks), delay, exc)
                if self.stop.wait(delay):
                    log.warning("stopping with an unwritten batch; its offsets stay uncommitted")
                    return False
                delay = min(delay * 2, 5.0)
                continue
            ROWS_WRITTEN.inc(result.inserted)
            BARS.inc(result.bars)
            BATCH.observe(result.received)
            LATENCY.observe(result.seconds)
            return True

    def _commit(self, offsets: dict[TP, int]) -> None:
        try:
            commit(self.consumer, {tp: off + 1 for tp, off in offsets.items()})
        except KafkaException as exc:
            # rows are in the database; a redelivery is harmless (idempotent insert)
            COMMIT_FAILURES.inc()
            log.warning("offset commit failed (the batch will be redelivered): %s", exc)

    def _update_lag(self) -> None:
        now = time.monotonic()
        if now - self._last_lag < self.lag_every_s:
            return
        self._last_lag = now
        report_lag(self.consumer, LAG)

    def _poll_batch(self, timeout_ms: int) -> tuple[dict[TP, int], list[bytes | None]]:
        """Collect up to batch_max messages: wait up to timeout_ms for the first, then linger briefly.

        Lingering turns a trickle of small fetches into one transaction (and one bar update)
        per batch when the topic is busy, and costs at most ``linger_ms`` when it is quiet.
        """
        offsets: dict[TP, int] = {}
        values: list[bytes | None] = []
        end: float | None = None
        wait = timeout_ms / 1000
        while len(values) < self.batch_max:
            # the first wait returns with the first message; then linger for more (consume waits
            # until it has them all or the time is up)
            msgs = (
                consume_ready(self.consumer, self.batch_max, wait)
                if end is None
                else self.consumer.consume(num_messages=self.batch_max - len(values), timeout=wait)
            )
            for m in good_messages(msgs):
                values.append(m.value())
                offsets[(m.topic(), m.partition())] = m.offset()  # type: ignore[index]
            if not values:
                break
            if end is None:
                end = time.monotonic() + self.linger_ms / 1000
            remaining = end - time.monotonic()
            if remaining <= 0 or not msgs:
                break
            wait = remaining
        return offsets, values

    def _fetch_loop(self) -> None:
        """The consumer's own thread: poll and decode batches, hand them over, commit what is written.

        Everything that touches the consumer (poll, commit, lag, close) happens here; the writer
        sends back the offsets of each batch it wrote.
        """
        try:
            while not self.stop.is_set():
                self._commit_written()
                offsets, values = self._poll_batch(500)
                HEARTBEAT.set(time.time())
                if values:
                    ROWS_RECEIVED.inc(len(values))
                    ticks, bad = decode_batch(values)
                    self._hand_over(_Batch(offsets, ticks, bad))
                self._update_lag()
        except BaseException as exc:  # surfaced by the writer, which re-raises it
            self._fetch_error = exc
            self.stop.set()
        finally:
            self._fetching.clear()
            self._written.wait()  # the writer finished the batches in hand (or gave up on one)
            self._commit_written()
            self.consumer.close()

    def _hand_over(self, batch: _Batch) -> None:
        """Queue a batch for the writer; while the queue is full, keep committing what it wrote."""
        while not self.stop.is_set():
            try:
                self._batches.put(batch, timeout=0.1)
                return
            except queue.Full:
                self._commit_written()
                HEARTBEAT.set(time.time())
        # stopping: this batch is dropped unwritten and uncommitted, so it is redelivered

    def _commit_written(self) -> None:
        """Commit the newest written offset of every partition the writer has reported."""
        latest: dict[TP, int] = {}
        while True:
            try:
                offsets = self._done.get_nowait()
            except queue.Empty:
                break
            for tp, off in offsets.items():
                latest[tp] = max(off, latest.get(tp, off))
        if latest:
            self._commit(latest)

    def _write_loop(self) -> None:
        """Write queued batches in order until fetching has ended and the queue is empty."""
        while True:
            try:
                batch = self._batches.get(timeout=0.1)
            except queue.Empty:
                if not self._fetching.is_set():
                    return
                continue
            if batch.bad:
                self._dead_letter(batch.bad)
            if batch.ticks and not self._write_until_done(batch.ticks):
                return  # stopped while the database was down: nothing after it may be committed
            self._done.put(batch.offsets)

    def run(self) -> None:
        """Fetch on one thread, write on this one, until ``stop``; then commit, close, leave the group.

        Fetching the next batch while the last one is written keeps the consumer busy during
        the database round trips (docs/bench.md finding 4). At most ``depth`` batches wait in
        between; only written batches are committed, so a crash redelivers the rest.
        """
        self._fetching.set()
        self._written.clear()
        fetcher = threading.Thread(target=self._fetch_loop, name="kafka-fetch", daemon=True)
        fetcher.start()
        try:
            self._write_loop()
        finally:
            self.stop.set()
            self._written.set()
            fetcher.join(timeout=60)
            self.writer.close()
            if self._producer is not None:
                self._producer.flush(10)
            log.info("tick ingestor stopped")
        if self._fetch_error is not None:
            raise self._fetch_error


def _log_partitions(what: str) -> Any:
    def _on_change(_consumer: Any, partitions: list[Any]) -> None:
        log.info("partitions %s: %s", what, sorted(p.partition for p in partitions))

    return _on_change


def main(argv: list[str] | None = None) -> int:
    """Run the ingestor until SIGTERM/SIGINT."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--batch-max", type=int, default=None, help="most ticks per batch (HFT_INGEST_BATCH_MAX)")
    p.add_argument(
        "--linger-ms", type=int, default=None, help="wait for a batch to fill (HFT_INGEST_LINGER_MS)"
    )
    p.add_argument("--no-metrics", action="store_true", help="do not serve /metrics (benchmarks, tests)")
    p.add_argument(
        "--metrics-port", type=int, default=None, help="instead of settings.port('metrics_tick_ingestor')"
    )
    args = p.parse_args(argv)
    settings = get_settings()
    setup_logging(settings.log_level, "tick-ingestor")
    stop = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: finishing the batch in hand", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        if not args.no_metrics:
            port = args.metrics_port or settings.port("metrics_tick_ingestor")
            start_http_server(port, addr=settings.bind_host)
        db.migrate_when_ready(settings, stop)
        ensure_topics(settings)  # subscribed topics exist (created with their settings if missing)
        ingestor = Ingestor(
            settings,
            batch_max=args.batch_max or settings.ingest_batch_max,
            linger_ms=settings.ingest_linger_ms if args.linger_ms is None else args.linger_ms,
        )
        ingestor.stop = stop
        log.info("consuming %s as group %s", settings.topic_ticks, GROUP)
        heap.freeze()  # what start-up loaded: out of the collector's way (finding 10)
        ingestor.run()
    except ConfigurationError as exc:
        log.error("%s", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
