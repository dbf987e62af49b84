"""The feature calculator's loop: Kafka ``market_ticks`` -> bars -> features -> online + offline stores.

Consumer group ``feature-calculator``. Per polled batch: each tick goes through
:class:`hft.features.calculator.FeatureCalculator` (bars by exchange trade time, features on each
closed bar); closed bars are written to Feast's Redis online store and announced on the Redis stream
``hft:bars:closed`` on the consuming thread, and handed to :class:`OfflineWriter`, whose thread
writes them to ``features.bar_features`` (a PostgreSQL round trip the next ticks no longer wait
for); each touched symbol's partial bar goes to ``hft:bars:partial:<symbol>``. Offsets are
committed up to the first tick of the oldest open bar, so a restart rebuilds open bars from all
their ticks, and only once the offline rows of every bar closed before them are written. A symbol's first tick triggers its
warm-up from ``market.bars``. The clock closes bars of a quiet market. Undecodable messages are
counted and skipped: the tick ingestor dead-letters them.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
from collections.abc import Callable

from confluent_kafka import Consumer, TopicPartition
from google.protobuf.message import DecodeError
from prometheus_client import Counter, Gauge, Histogram

from hft.bus.client import TICK_INGESTOR_GROUP, TP, make_consumer
from hft.bus.metrics import BatchHistogram
from hft.bus.retry import Stopped, retry
from hft.bus.runtime import ConsumerLoop
from hft.config import Settings, TransientError
from hft.features.calculator import ClosedBar, FeatureCalculator, FeatureSink, bar_loader, commit_offsets
from hft.schema.market_pb2 import Tick
from hft.storage.ticks import validate_tick

log = logging.getLogger(__name__)
GROUP = "feature-calculator"
QUIET_CHECK_S = 1.0  # how often a busy calculator looks for symbols whose partition is read to the end

_US = (1e-6, 2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2.5e-4, 1e-3, 1e-2)
# fine below 25 ms, where the goals are (p99 <= 3 ms): a quantile is interpolated inside a bucket
_MS = (
    *(0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.0025, 0.003, 0.004, 0.005, 0.0075),
    *(0.01, 0.015, 0.02, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
TICKS = Counter("feature_calculator_ticks", "Ticks folded into bars")
SKIPPED = Counter(
    "feature_calculator_skipped", "Messages not decodable as Ticks (the ingestor dead-letters them)"
)
LATE = Counter("feature_calculator_late_trades", "Trades older than the open bar (closed by the clock)")
UPDATE = Histogram("feature_calculator_update_seconds", "Bar + feature update cost per tick", buckets=_US)
TICK_TO_FEATURE = Histogram(
    "feature_calculator_tick_to_feature_seconds",
    "From a tick's receive_time_ns to its bar/feature update done (a closing tick: features online and "
    "the bar announced)",
    buckets=_MS,
)
BARS = Counter("feature_calculator_bars_closed", "Bars closed", ["symbol"])
ONLINE = Histogram("feature_calculator_online_write_seconds", "Online store write per batch", buckets=_MS)
OFFLINE = Histogram(
    "feature_calculator_offline_write_seconds",
    "features.bar_features upsert per batch (on the offline writer's thread)",
    buckets=_MS,
)
OFFLINE_BEHIND = Gauge(
    "feature_calculator_offline_batches_behind", "Batches of closed bars handed over, not yet written offline"
)
LAG = Gauge("feature_calculator_consumer_lag", "Messages behind the end of the topic", ["partition"])
BAR_AGE = Gauge(
    "feature_calculator_last_feature_age_seconds", "Now minus the feature time of the last closed bar"
)
HEARTBEAT = Gauge("feature_calculator_heartbeat_timestamp_seconds", "Last loop heartbeat (unix time)")
WARMUPS = Counter(
    "feature_calculator_warmups",
    "Symbols warmed up from market.bars, by whether the tick store held every tick before their first",
    ["outcome"],  # stored | no_ingestor | timed_out
)
# how long a warm-up waits for the tick ingestor to store the ticks before the symbol's first one
WARMUP_WAIT_S = 20.0
# how long a rebalance or a clean stop waits for the offline writer before committing without it
DRAIN_WAIT_S = 10.0


def _decode(value: bytes | None) -> Tick | None:
    if not value:
        return None
    t = Tick()
    try:
        t.ParseFromString(value)
    except DecodeError:
        return None
    return None if validate_tick(t) else t


class OfflineWriter:
    """Writes closed bars to ``features.bar_features`` on its own thread, in the order handed over.

    The consuming thread hands a batch over (:meth:`submit`, a sequence number back) and goes on
    folding ticks; the calculator commits offsets only up to what :attr:`done` covers, so a crash
    re-reads every bar whose row is not written (the upsert is idempotent). While PostgreSQL is
    down the thread retries the same batch (backoff, until stopped) and the batches behind it
    wait; a bug (any other error) ends the thread and :meth:`check` raises it on the consuming
    thread, which crashes the process like an inline write did.
    """

    def __init__(self, write: Callable[[list[ClosedBar]], float], stop: threading.Event) -> None:
        self._write = write
        self._stop = stop
        self._queue: queue.SimpleQueue[tuple[int, list[ClosedBar]] | None] = queue.SimpleQueue()
        self._done_cv = threading.Condition()
        self.submitted = 0  # sequence number of the last batch handed over
        self.done = 0  # ... and of the last one written
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="offline-writer", daemon=True)
        self._thread.start()

    def submit(self, closed: list[ClosedBar]) -> int:
        """Hand a batch over; return its sequence number."""
        self.check()
        self.submitted += 1
        self._queue.put((self.submitted, closed))
        OFFLINE_BEHIND.set(self.submitted - self.done)
        return self.submitted

    def check(self) -> None:
        """Raise the error that ended the writer's thread, if one did."""
        if self.error is not None:
            raise self.error

    def wait(self, seq: int, timeout_s: float = 0.0) -> bool:
        """True once batch ``seq`` and every batch before it are written (waits at most ``timeout_s``)."""
        if self.done >= seq:
            return True
        with self._done_cv:
            return self._done_cv.wait_for(
                lambda: self.done >= seq or self.error is not None or not self._thread.is_alive(), timeout_s
            ) and (self.done >= seq)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            seq, closed = item
            try:
                seconds = retry(
                    functools.partial(self._write, closed), self._stop, f"{len(closed)} offline feature rows"
                )
            except Stopped:
                log.warning("stopped with %d batches of offline rows unwritten", self.submitted - self.done)
                self._notify()
                return
            except BaseException as exc:  # a bug: the consuming thread re-raises it (check)
                log.exception("offline writer failed; %d batches unwritten", self.submitted - self.done)
                self.error = exc
                self._notify()
                return
            OFFLINE.observe(seconds)
            with self._done_cv:
                self.done = seq
                self._done_cv.notify_all()
            OFFLINE_BEHIND.set(self.submitted - seq)

    def _notify(self) -> None:
        with self._done_cv:
            self._done_cv.notify_all()

    def close(self, timeout_s: float = DRAIN_WAIT_S) -> None:
        """Write what is queued (at most ``timeout_s``), then end the thread."""
        self._queue.put(None)
        self._thread.join(timeout_s)


class Calculator(ConsumerLoop):
    """The consume -> compute -> write -> commit loop."""

    name = "feature calculator"
    heartbeat = HEARTBEAT
    lag_gauge = LAG
    transient = ()  # a batch half folded cannot be retried: crash, and re-read from the committed offsets

    def __init__(
        self,
        settings: Settings,
        batch_max: int = 2000,
        lag_every_s: float = 5.0,
        warmup_wait_s: float = WARMUP_WAIT_S,
        ingestor_group: str = TICK_INGESTOR_GROUP,
        clock: Callable[[], int] = time.time_ns,
        commit_every_s: float = 0.25,
        partials_every_s: float = 0.1,
        stop: threading.Event | None = None,
    ) -> None:
        super().__init__(settings, GROUP, [settings.topic_ticks], stop)
        self.batch_max = batch_max
        self.lag_every_s = lag_every_s
        # per-batch costs that do not need every batch: at 1,000 ticks/s a poll returns a handful
        # of ticks, and a synchronous commit plus a Redis round trip each time capped the
        # calculator below the offered rate (docs/bench.md, finding 5). Closed bars are still
        # written at once; a crash re-reads at most commit_every_s of ticks (writes are idempotent).
        self.commit_every_s = commit_every_s
        self.partials_every_s = partials_every_s
        self._pending_offsets: dict[TP, int] = {}
        self._touched: set[str] = set()
        self._last_commit = 0.0
        self._last_partials = 0.0
        self._last_quiet_check = 0.0
        self.clock = clock  # wall clock, ns: closes bars of a quiet market (tests inject their own)
        self.calc = FeatureCalculator(settings.bar_interval, loader=bar_loader(settings))
        self.sink = FeatureSink(settings)
        self.offline = OfflineWriter(self.sink.write_offline, self.stop)
        # offsets computed, waiting for the offline writer to reach the batch they cover
        self._inflight: tuple[int, dict[TP, int]] | None = None
        self._open_offsets: dict[str, tuple[TP, int]] = {}  # symbol -> (partition, first offset of open bar)
        self._last_feature_ns = 0
        self._assigned: set[TP] = set()
        self._in_batch = False
        self.warmup_wait_s = warmup_wait_s
        self.ingestor_group = ingestor_group
        self._ingested: Consumer | None = None  # reads the tick ingestor's committed offsets
        # per-tick metrics, added to the registry once per batch (hft.bus.metrics)
        self._update = BatchHistogram(UPDATE)
        self._tick_to_feature = BatchHistogram(TICK_TO_FEATURE)

    def await_stored(self, tp: TP, offset: int) -> str:
        """Wait, at most ``warmup_wait_s``, until the tick ingestor has stored every tick of ``tp``
        before ``offset`` (its committed offset reached it).

        A symbol warms up from ``market.bars``, which the ingestor builds from the ticks it stores.
        A calculator that takes a partition over (a rebalance, a restart) while the ingestor lags
        would otherwise fold the last bar before its first tick as the ingestor had it then, without
        its last trades: a stale close, and the first streamed bar's returns computed from it
        (docs/bench.md, Left 8). No committed offset at all means no ingestor has ever read the
        partition: nothing to wait for. Returns the outcome, also counted in ``WARMUPS``.
        """
        if self._ingested is None:
            self._ingested = make_consumer(self.s, self.ingestor_group, f"{GROUP}-warmup-{self.s.port_base}")
        deadline = time.monotonic() + self.warmup_wait_s
        outcome = "stored"
        while True:
            committed = self._ingested.committed([TopicPartition(tp[0], tp[1])], timeout=5)[0].offset
            if committed < 0:
                outcome = "no_ingestor"
                break
            if committed >= offset:
                break
            if time.monotonic() >= deadline or self.stop.is_set():
                outcome = "timed_out"
                log.warning(
                    "partition %s: the tick ingestor stored up to offset %d, the warm-up needs %d; "
                    "warming up from the bars stored so far",
                    tp,
                    committed,
                    offset,
                )
                break
            time.sleep(0.05)
        WARMUPS.labels(outcome).inc()
        return outcome

    def on_assign(self, partitions: set[TP]) -> None:
        self._assigned |= partitions

    def on_revoke(self, partitions: set[TP]) -> None:
        """Partitions moved to another calculator: commit what is ours, forget their symbols' bars.

        The new owner re-reads from the committed offset (the first tick of each open bar), so
        it rebuilds those bars from all their ticks; keeping them here would let this process
        close them by the clock with only part of their ticks.
        """
        gone = partitions
        if (self._pending_offsets or self._inflight) and not self._in_batch:
            # never inside a batch that raised (close() after a crash revokes too): the open bars
            # already moved past bars that are not written yet, so the offsets would skip them
            self._commit_pending(DRAIN_WAIT_S)
        self._assigned -= gone
        for sym in [s for s, (tp, _o) in self._open_offsets.items() if tp in gone]:
            self.calc.forget(sym)
            del self._open_offsets[sym]
            self._touched.discard(sym)
        self._pending_offsets = {tp: o for tp, o in self._pending_offsets.items() if tp not in gone}
        if self._inflight is not None:  # the writer did not catch up: the new owner re-reads those bars
            seq, offsets = self._inflight
            self._inflight = (seq, {tp: o for tp, o in offsets.items() if tp not in gone})

    def _write(self, closed: list[ClosedBar]) -> None:
        """Write the closed bars online and announce them, retrying while Redis is down (the same
        bars, never skipped), then hand them to the offline writer; stopped meanwhile, raise: the
        offsets stay before them and a restart redoes them."""
        try:
            t = retry(lambda: self.sink.write_online(closed), self.stop, f"{len(closed)} closed bars")
        except Stopped as exc:
            raise TransientError(f"stopped with {len(closed)} closed bars unwritten") from exc
        self.offline.submit(closed)
        ONLINE.observe(t.online)
        for c in closed:
            BARS.labels(c.bar.symbol).inc()
            self._last_feature_ns = max(self._last_feature_ns, c.bar.close_time_ns)

    def run_once(self, timeout_ms: int = 200) -> int:
        """Poll one batch, fold it, write closed bars and partials, commit; return messages handled."""
        self.offline.check()
        msgs = self.poll(self.batch_max, timeout_ms / 1000)
        self._in_batch = True  # until this batch's closed bars are written (see on_revoke)
        closed_all = []
        touched: set[str] = set()
        pending_latency: list[int] = []
        next_offsets: dict[TP, int] = {}
        n = len(msgs)
        n_ticks = n_skipped = n_late = 0
        update, tick_to_feature = self._update, self._tick_to_feature
        for m in msgs:
            tp: TP = (m.topic(), m.partition())  # type: ignore[assignment]
            if tp not in self._assigned:
                # fetched before a rebalance that happened inside this very poll moved the
                # partition away: its new owner reads it from the committed offset; folding it here
                # would rebuild the symbol from a mid-bar tick and let the clock close that bar
                continue
            offset: int = m.offset()  # type: ignore[assignment]
            next_offsets[tp] = offset + 1
            t = _decode(m.value())
            if t is None:
                n_skipped += 1
                continue
            n_ticks += 1
            t0 = time.perf_counter_ns()
            if t.symbol not in self.calc.symbols:
                self.await_stored(tp, offset)  # it warms up from market.bars on this tick
            before = self.calc.partial(t.symbol)
            closed = self.calc.on_tick(t)
            t1 = time.perf_counter_ns()
            update.observe((t1 - t0) / 1e9)
            if closed is None:
                n_late += 1
                continue
            if self.calc.partial(t.symbol) is not before:
                # this tick opened a new bar: a restart must re-read from here
                self._open_offsets[t.symbol] = (tp, offset)
            touched.add(t.symbol)
            if closed:
                closed_all += closed
                pending_latency.append(t.receive_time_ns)
            else:
                tick_to_feature.observe(max(time.time_ns() - t.receive_time_ns, 0) / 1e9)
        if n_ticks:
            TICKS.inc(n_ticks)
        if n_skipped:
            SKIPPED.inc(n_skipped)
        if n_late:
            LATE.inc(n_late)
        polled = n > 0
        if not polled:
            # idle: a bar whose time is over can only be closed by the clock, but only where no
            # trade is waiting: a poll also comes back empty during a rebalance, with a backlog
            # behind it, and the clock (the last tick's exchange time plus the wall time since it
            # was received) would close a lagging symbol's bar before its last trades are read,
            # dropping them as late (docs/bench.md, Left 8). With a backlog the next trade closes it.
            closed_all += self.calc.on_clock(self.clock(), self._caught_up_symbols())
        elif time.monotonic() - self._last_quiet_check >= QUIET_CHECK_S:
            # busy, but a symbol whose partition has nothing left to read is as idle as above: its
            # open bar must not wait for the whole topic to go quiet (it would pin the committed
            # offsets, so every restart re-read from it: docs/bench.md finding 6)
            self._last_quiet_check = time.monotonic()
            quiet = self._caught_up_symbols()
            if quiet:
                closed_all += self.calc.on_clock(self.clock(), quiet)
        if closed_all:
            self._write(closed_all)
            now = time.time_ns()
            for rt in pending_latency:
                tick_to_feature.observe(max(now - rt, 0) / 1e9)
        update.flush()
        tick_to_feature.flush()
        self._touched |= touched
        self._pending_offsets.update(next_offsets)
        self._in_batch = False
        now_s = time.monotonic()
        if self._touched and (
            closed_all or not polled or now_s - self._last_partials >= self.partials_every_s
        ):
            self._flush_partials()
        for c in closed_all:
            if self.calc.partial(c.bar.symbol) is None:  # closed by the clock: no bar open now
                try:
                    self.sink.clear_partial(c.bar.symbol)
                except TransientError as exc:  # a stale partial until Redis is back: harmless
                    log.warning("%s", exc)
        if self._last_feature_ns:
            BAR_AGE.set((time.time_ns() - self._last_feature_ns) / 1e9)
        if (self._pending_offsets or self._inflight) and (
            not polled or now_s - self._last_commit >= self.commit_every_s
        ):
            self._commit_pending()
        self.report_lag()
        return n

    def _caught_up_symbols(self) -> list[str]:
        """Symbols with an open bar in a partition read up to its high watermark (as of the last fetch)."""
        out = []
        for sym, (tp, _first) in self._open_offsets.items():
            if tp not in self._assigned or self.calc.partial(sym) is None:
                continue
            ktp = TopicPartition(*tp)
            _low, high = self.consumer.get_watermark_offsets(ktp, cached=True)
            pos = self.consumer.position([ktp])[0].offset
            if high is not None and high >= 0 and pos >= high:
                out.append(sym)
        return out

    def _flush_partials(self) -> None:
        """Snapshot the touched symbols' open bars; while Redis is down keep them for the next try."""
        self._last_partials = time.monotonic()
        try:
            self.sink.write_partials(b for s in self._touched if (b := self.calc.partial(s)) is not None)
        except TransientError as exc:
            log.warning("%s", exc)
            return
        self._touched.clear()

    def _commit_pending(self, wait_s: float = 0.0) -> None:
        """Commit the offsets handled so far, once the offline writer has written every bar closed
        before them (waiting at most ``wait_s``); until then they wait as ``_inflight`` (one set at
        a time: newer offsets accumulate meanwhile) and the committed offsets stay behind.

        The periodic commit (``wait_s`` 0) does not wait for the broker either: a synchronous
        commit is a broker round trip the next ticks would wait behind (the p99 of tick→feature);
        a rebalance or a stop (``wait_s`` > 0) commits synchronously.
        """
        sync = wait_s > 0
        if self._inflight is not None:
            seq, offsets = self._inflight
            if not self.offline.wait(seq, wait_s):
                return
            self._commit(offsets, sync)
            self._inflight = None
        if not self._pending_offsets:
            return
        offsets = self._offsets(self._pending_offsets)
        self._pending_offsets = {}
        self._last_commit = time.monotonic()
        seq = self.offline.submitted
        if self.offline.wait(seq, wait_s):
            self._commit(offsets, sync)
        else:
            self._inflight = (seq, offsets)

    def _offsets(self, next_offsets: dict[TP, int]) -> dict[TP, int]:
        """Per partition: the first tick of its oldest open bar, else the next unread."""
        opens: dict[TP, list[int]] = {}
        for sym, (tp, off) in self._open_offsets.items():
            if self.calc.partial(sym) is not None:
                opens.setdefault(tp, []).append(off)
        return commit_offsets(next_offsets, opens)

    def _commit(self, offsets: dict[TP, int], sync: bool) -> None:
        self.commit({tp: off for tp, off in offsets.items() if tp in self._assigned}, asynchronous=not sync)

    def finish(self) -> None:
        """After a clean stop: the last partials, and the offsets once the offline rows are written."""
        if self._touched:
            self._flush_partials()
        if self._pending_offsets or self._inflight:
            self._commit_pending(DRAIN_WAIT_S)

    def close(self) -> None:
        """Leave the group, close the stores."""
        try:
            super().close()
        finally:
            self.offline.close()
            self.sink.close()
            if self._ingested is not None:
                self._ingested.close()  # never subscribed: leaves no group
