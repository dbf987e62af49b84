"""Ticks and dead letters into Kafka with kafka-python (the market producer's sink).

Key = symbol (so one symbol's ticks stay in one partition, in order), value = ``Tick``
protobuf; dead letters go to their own topic as ``DeadLetter`` with the reason and raw bytes.
The producer is built with ``acks="all"`` and retries; send latency (send → broker ack) is
sampled every ``latency_every`` messages to keep the hot path cheap. A send that fails after
its retries is counted and logged and sets :attr:`KafkaTickSink.failed`, so the process can
stop instead of losing data silently.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from hft.config import Settings
from hft.market.ticks import Tick, dead_letter_bytes

log = logging.getLogger("hft.market.kafka")


def make_producer(settings: Settings, **overrides: Any) -> Any:
    """A kafka-python KafkaProducer for the market topics (acks=all, retries, configured linger)."""
    from kafka import KafkaProducer

    kwargs: dict[str, Any] = {
        **settings.kafka_client_kwargs(),
        "acks": "all",
        "retries": 10,
        "linger_ms": settings.kafka_linger_ms,
        "batch_size": 256 * 1024,
        "compression_type": None if settings.kafka_compression == "none" else settings.kafka_compression,
        "metrics_enabled": False,  # kafka-python's own sensors cost per message; ours are sampled
        "max_in_flight_requests_per_connection": 1,  # retries must not reorder a symbol's ticks
        "request_timeout_ms": 30_000,
        "retry_backoff_ms": 200,
        "client_id": "market-producer",
        **overrides,
    }
    return KafkaProducer(**kwargs)


def _fast_path(producer: Any) -> tuple[Any, Any]:
    """kafka-python 3.0's accumulator append and sender wake-up, when this is that producer.

    ``KafkaProducer.send`` spends most of its time re-checking what is fixed for a tick
    stream (serializers, headers, metadata, partition, record size, transactions): appending
    to the accumulator directly, as ``send`` ends up doing, halves the cost per tick. Only for
    the kafka-python line this was written against (pinned in pyproject); otherwise ``send``.
    """
    import kafka

    acc, sender = getattr(producer, "_accumulator", None), getattr(producer, "_sender", None)
    if not kafka.__version__.startswith("3.0.") or acc is None or sender is None:
        return None, None
    if getattr(producer, "_transaction_manager", None) is not None and \
            producer._transaction_manager.is_transactional():
        return None, None
    return acc.append, sender.wakeup


class KafkaTickSink:
    """A :class:`hft.market.stream.TickSink` that sends to Kafka."""

    def __init__(self, producer: Any, topic: str, dlq_topic: str, latency_every: int = 50,
                 on_latency: Callable[[float], None] | None = None) -> None:
        self.producer = producer
        self.topic = topic
        self.dlq_topic = dlq_topic
        self.latency_every = latency_every
        self.on_latency = on_latency
        self.sent = 0
        self.dead = 0
        self.errors = 0
        self.failed: BaseException | None = None
        self._keys: dict[str, tuple[bytes, int | None, Any]] = {}
        self._send = producer.send
        self._append, self._wakeup = _fast_path(producer)

    def tick(self, tick: Tick) -> None:
        """Send one tick (asynchronously; the producer batches)."""
        kp = self._keys.get(tick.symbol)
        if kp is None:
            kp = self._keys[tick.symbol] = self._key_partition(tick.symbol)
        value = tick.SerializeToString()
        self.sent += 1
        if self._append is not None and kp[2] is not None:
            fut, full, new_batch, _ = self._append(kp[2], None, kp[0], value, [])
            if new_batch:
                # one errback per batch: a batch fails or succeeds as a whole
                fut._produce_future.add_callback(self._on_batch_done)
                fut._produce_future.add_errback(self._on_error)
            if full or new_batch:
                self._wakeup()
        else:
            fut = self._send(self.topic, value=value, key=kp[0], partition=kp[1])
            fut.add_errback(self._on_error)
        if self.on_latency is not None and self.sent % self.latency_every == 0:
            t0 = time.perf_counter()
            observe = self.on_latency
            fut.add_callback(lambda _md: observe(time.perf_counter() - t0))

    def _on_batch_done(self, result: Any) -> None:
        # (offset, timestamp, record_exceptions_fn): per-record errors of an accepted batch
        if result[2] is not None:
            self._on_error(RuntimeError("broker refused records of a batch"))

    def _key_partition(self, symbol: str) -> tuple[bytes, int | None, Any]:
        # The default partitioner's choice, computed once per symbol: the per-message
        # murmur2 and metadata look-ups are a fifth of kafka-python's send cost.
        key = symbol.encode()
        try:
            parts = sorted(self.producer.partitions_for(self.topic))
        except (AttributeError, TypeError):
            return key, None, None
        if not parts:
            return key, None, None
        from kafka import TopicPartition
        from kafka.partitioner.default import murmur2

        partition = parts[(murmur2(key) & 0x7FFFFFFF) % len(parts)]
        return key, partition, TopicPartition(self.topic, partition)

    def dead_letter(self, reason: str, raw: bytes, receive_time_ns: int, stream: str) -> None:
        """Send one refused input with its reason to the dead-letter topic."""
        self.dead += 1
        log.warning("dead letter (%s): %r", reason, raw[:200])
        fut = self._send(self.dlq_topic, value=dead_letter_bytes(reason, raw, receive_time_ns, stream),
                         key=stream.encode() or None)
        fut.add_errback(self._on_error)

    def _on_error(self, exc: BaseException) -> None:
        self.errors += 1
        if self.failed is None:
            self.failed = exc
            log.error("Kafka send failed after retries: %r", exc)

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait until every sent message is acknowledged."""
        self.producer.flush(timeout=timeout_s)


def last_trade_ids(settings: Settings, topic: str, symbols: list[str], tail: int = 2000,
                   timeout_s: float = 20.0) -> dict[str, int]:
    """The highest trade id per symbol among the last ``tail`` messages of each partition.

    What the producer already delivered before a crash or restart: the stream client resumes
    from there (REST catch-up) instead of from whatever the live stream shows first.
    """
    from kafka import KafkaConsumer, TopicPartition

    from hft.market.ticks import decode_tick

    wanted = set(symbols)
    consumer = KafkaConsumer(**settings.kafka_client_kwargs(), enable_auto_commit=False)
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        if not tps:
            return {}
        consumer.assign(tps)
        ends = consumer.end_offsets(tps)
        begins = consumer.beginning_offsets(tps)
        todo = {tp for tp in tps if ends[tp] > begins[tp]}
        for tp in todo:
            consumer.seek(tp, max(begins[tp], ends[tp] - tail))
        last: dict[str, int] = {}
        deadline = time.monotonic() + timeout_s
        while todo and time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=500, max_records=5000).items():
                for r in records:
                    t = decode_tick(r.value)
                    if t.symbol in wanted and t.trade_id > last.get(t.symbol, -1):
                        last[t.symbol] = t.trade_id
                    if r.offset >= ends[tp] - 1:
                        todo.discard(tp)
        return last
    finally:
        consumer.close()
