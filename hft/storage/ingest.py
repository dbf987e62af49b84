"""The tick ingestor: Kafka ``market_ticks`` → ``market.ticks`` (+ 1m/15m bars), idempotent.

Consumer group ``tick-ingestor``. Each polled batch is decoded, bad messages go to the dead-letter
topic with their reason, the rest are written by :class:`hft.storage.ticks.TickWriter` in one
transaction, and only then are the Kafka offsets committed. A fetch thread owns the consumer and
polls the next batch while the last one is written. A database error backs off and retries the
same batch (never skips it). A stop finishes the batches in hand, commits, and leaves the group.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass

from prometheus_client import Counter, Gauge, Histogram

from hft.bus.client import TICK_INGESTOR_GROUP, TP, good_messages
from hft.bus.retry import Stopped, retry
from hft.bus.runtime import ConsumerLoop, DeadLetters
from hft.config import Settings
from hft.schema.market_pb2 import Tick
from hft.storage.ticks import TickWriter, WriteResult, decode_batch

log = logging.getLogger(__name__)
GROUP = TICK_INGESTOR_GROUP

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

    offsets: dict[TP, int]  # the last offset read per partition
    ticks: list[Tick]
    bad: list[tuple[bytes, str]]


class Ingestor(ConsumerLoop):
    """The consume → write → commit pipeline, with fetching overlapped with writing."""

    name = "tick ingestor"
    heartbeat = HEARTBEAT
    lag_gauge = LAG
    commit_failures = COMMIT_FAILURES

    def __init__(
        self,
        settings: Settings,
        batch_max: int = 5000,
        linger_ms: int = 50,
        depth: int = 2,
        stop: threading.Event | None = None,
    ) -> None:
        super().__init__(
            settings,
            GROUP,
            [settings.topic_ticks],
            stop,
            # throughput: big fetches per partition; the poll's linger (below) batches small ones
            **{"max.partition.fetch.bytes": 4 * 1024 * 1024, "fetch.max.bytes": 32 * 1024 * 1024},
        )
        self.batch_max = batch_max
        self.linger_ms = linger_ms
        self.writer = TickWriter(settings)
        self.dead_letters = DeadLetters(
            settings, f"tick-ingestor-dlq-{settings.port_base}", f"kafka:{settings.topic_ticks}", DEAD
        )
        self._batches: queue.Queue[_Batch] = queue.Queue(maxsize=depth)
        self._done: queue.SimpleQueue[dict[TP, int]] = queue.SimpleQueue()
        self._fetching = threading.Event()
        self._written = threading.Event()
        self._fetch_error: BaseException | None = None

    # ---- the writer (the caller's thread) ------------------------------------------------------
    def write(self, batch: _Batch) -> bool:
        """Dead-letter the bad messages, write the ticks (retrying database errors); False when
        stopped before the batch was written."""
        if batch.bad:
            self.dead_letters.send(batch.bad, self.stop)
        if not batch.ticks:
            return True
        try:
            result: WriteResult = retry(
                lambda: self.writer.write(batch.ticks),
                self.stop,
                f"tick batch of {len(batch.ticks)}",
                on_retry=lambda _exc: RETRIES.inc(),
            )
        except Stopped:
            log.warning("stopping with an unwritten batch; its offsets stay uncommitted")
            return False
        ROWS_WRITTEN.inc(result.inserted)
        BARS.inc(result.bars)
        BATCH.observe(result.received)
        LATENCY.observe(result.seconds)
        return True

    def _write_loop(self) -> None:
        """Write queued batches in order until fetching has ended and the queue is empty."""
        while True:
            try:
                batch = self._batches.get(timeout=0.1)
            except queue.Empty:
                if not self._fetching.is_set():
                    return
                continue
            if not self.write(batch):
                return  # stopped while the database was down: nothing after it may be committed
            self._done.put(batch.offsets)

    # ---- the fetcher (owns the consumer) -------------------------------------------------------
    def poll_batch(self, timeout_ms: int) -> tuple[dict[TP, int], list[bytes | None]]:
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
            if end is None:
                msgs = self.poll(self.batch_max, wait)
            else:
                msgs = self.consumer.consume(num_messages=self.batch_max - len(values), timeout=wait)
            for m in good_messages(msgs):
                values.append(m.value())
                offsets[(m.topic(), m.partition())] = m.offset()  # type: ignore[index,assignment]
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
                offsets, values = self.poll_batch(500)
                if values:
                    ROWS_RECEIVED.inc(len(values))
                    ticks, bad = decode_batch(values)
                    self._hand_over(_Batch(offsets, ticks, bad))
                self.report_lag()
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
        self.commit({tp: off + 1 for tp, off in latest.items()})

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
            self.dead_letters.close()
            log.info("tick ingestor stopped")
        if self._fetch_error is not None:
            raise self._fetch_error
