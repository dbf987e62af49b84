"""The one Kafka client of the system: confluent-kafka (librdkafka), configured from Settings.

Chosen over kafka-python by a side-by-side measurement on the real broker (``bench/kafka_clients.py``,
README "Kafka client"). Every producer and consumer of the project is built here, so the
settings that matter live in one place:

- producers are idempotent with ``acks=all`` (no duplicate or reordered ticks across retries),
  partition by murmur2 of the key like the Java client (one symbol, one partition), send at once
  by default (``HFT_KAFKA_LINGER_MS=0``) with Nagle off;
- consumers never auto-commit (the caller commits after it stored), start at the earliest offset
  of a new group, and let a fetch wait at most ``HFT_KAFKA_FETCH_WAIT_MS`` at the broker.

Partitions are addressed as ``(topic, partition)`` tuples outside this module.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from confluent_kafka import (
    OFFSET_INVALID,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from hft.config import Settings

log = logging.getLogger(__name__)

TP = tuple[str, int]

__all__ = [
    "TP",
    "KafkaError",
    "KafkaException",
    "commit",
    "consume_ready",
    "good_messages",
    "lag",
    "make_consumer",
    "make_producer",
]


def _rdkafka_logger(name: str) -> logging.Logger:
    return logging.getLogger(f"kafka.{name}")


def producer_config(settings: Settings, client_id: str, **overrides: Any) -> dict[str, Any]:
    """librdkafka producer settings: idempotent, acks=all, latency first unless overridden."""
    return {
        "bootstrap.servers": settings.kafka_bootstrap_servers(),
        "client.id": client_id,
        "enable.idempotence": True,  # implies acks=all, bounded in-flight, ordered retries
        "acks": "all",
        "linger.ms": settings.kafka_linger_ms,
        "compression.type": settings.kafka_compression,
        "partitioner": "murmur2_random",  # the Java client's partitioner: same key, same partition
        "socket.nagle.disable": True,
        "message.timeout.ms": 120_000,  # a broker outage up to 2 min is retried, not failed
        "queue.buffering.max.messages": 1_000_000,
        "logger": _rdkafka_logger(client_id),
        **overrides,
    }


def make_producer(settings: Settings, client_id: str, **overrides: Any) -> Producer:
    """An idempotent producer (see :func:`producer_config`)."""
    return Producer(producer_config(settings, client_id, **overrides))


# the tick ingestor's consumer group: the feature calculator reads its committed offsets to know
# how far market.bars is built (hft.features.streaming.Calculator.await_stored)
TICK_INGESTOR_GROUP = "tick-ingestor"


def consumer_config(settings: Settings, group: str, client_id: str, **overrides: Any) -> dict[str, Any]:
    """librdkafka consumer settings: manual commits, earliest for a new group, short fetch wait."""
    return {
        "bootstrap.servers": settings.kafka_bootstrap_servers(),
        "group.id": group,
        "client.id": client_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "fetch.wait.max.ms": settings.kafka_fetch_wait_ms,
        "fetch.min.bytes": 1,
        "socket.nagle.disable": True,
        # a crashed member's partitions move to the others after 10 s, not 45 s
        "session.timeout.ms": 10_000,
        "heartbeat.interval.ms": 2_000,
        # longer than any database outage we retry through; past it the member leaves and rejoins
        "max.poll.interval.ms": 300_000,
        "partition.assignment.strategy": "cooperative-sticky",
        "on_commit": _log_commit,
        "logger": _rdkafka_logger(client_id),
        **overrides,
    }


def make_consumer(settings: Settings, group: str, client_id: str, **overrides: Any) -> Consumer:
    """A group consumer that commits only what the caller says (see :func:`consumer_config`)."""
    return Consumer(consumer_config(settings, group, client_id, **overrides))


def commit(consumer: Consumer, next_offsets: dict[TP, int], asynchronous: bool = False) -> None:
    """Commit the next offset to read of each partition; raises KafkaException.

    ``asynchronous``: send it and return (no broker round trip on the caller's thread); a failure
    is then logged by :func:`_log_commit` from a later poll, and the next commit covers it.
    """
    if not next_offsets:
        return
    offsets = [TopicPartition(t, p, off) for (t, p), off in next_offsets.items()]
    if asynchronous:
        consumer.commit(offsets=offsets, asynchronous=True)
    else:
        consumer.commit(offsets=offsets, asynchronous=False)


def _log_commit(err: Any, partitions: list[TopicPartition]) -> None:
    """librdkafka's commit callback: an asynchronous commit that failed."""
    if err is not None:
        log.warning("offset commit failed (will be re-read, writes are idempotent): %s", err)


def lag(consumer: Consumer, partitions: Iterable[TopicPartition] | None = None) -> dict[int, int]:
    """Messages between each assigned partition's position and its end, as of the last fetch.

    Uses the watermarks cached from fetch responses (no broker round trip); a partition not
    fetched yet is left out.
    """
    parts = list(partitions if partitions is not None else consumer.assignment())
    if not parts:
        return {}
    out: dict[int, int] = {}
    for tp in consumer.position(parts):
        _low, high = consumer.get_watermark_offsets(tp, cached=True)
        if high is None or high < 0 or tp.offset == OFFSET_INVALID or tp.offset < 0:
            continue
        out[tp.partition] = max(high - tp.offset, 0)
    return out


def report_lag(consumer: Consumer, gauge: Any) -> None:
    """Set ``gauge`` (labelled by partition) to each partition's lag; a client error skips one report."""
    try:
        lags = lag(consumer)
    except KafkaException as exc:
        log.debug("lag not measured: %s", exc)
        return
    for partition, n in lags.items():
        gauge.labels(str(partition)).set(n)


def partition_for(key: bytes, partitions: int) -> int:
    """The partition a key goes to: murmur2 as the Java client (and ``partitioner=murmur2_random``)."""
    m, h = 0x5BD1E995, (0x9747B28C ^ len(key)) & 0xFFFFFFFF
    n4 = len(key) // 4
    for i in range(n4):
        k = int.from_bytes(key[i * 4 : i * 4 + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> 24
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    tail, extra = key[n4 * 4 :], len(key) % 4
    if extra == 3:
        h ^= tail[2] << 16
    if extra >= 2:
        h ^= tail[1] << 8
    if extra >= 1:
        h ^= tail[0]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return (h & 0x7FFFFFFF) % partitions


def consume_ready(consumer: Consumer, max_messages: int, timeout_s: float) -> list[Message]:
    """Up to ``max_messages`` messages, returning as soon as there is at least one.

    ``Consumer.consume(n, timeout)`` waits until it has ``n`` messages or the time-out passes: at
    1,000 ticks/s with n = 2,000 and 200 ms that is a 100 ms median wait on every tick. Here: take
    what librdkafka has already fetched; if nothing, wait (up to ``timeout_s``) for one message,
    then take what came with it.
    """
    msgs = consumer.consume(max_messages, 0)
    if msgs:
        return msgs
    first = consumer.poll(timeout_s)
    if first is None:
        return []
    return [first, *consumer.consume(max_messages - 1, 0)] if max_messages > 1 else [first]


def good_messages(msgs: list[Message]) -> list[Message]:
    """The messages that carry data; a fatal client error raises, the others are logged and skipped
    (librdkafka retries them itself: a broker away, a partition moving)."""
    out = []
    for m in msgs:
        err = m.error()
        if err is None:
            out.append(m)
        elif err.fatal():
            raise KafkaException(err)
        else:
            log.warning("consumer: %s", err)
    return out
