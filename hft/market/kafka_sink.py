"""Ticks and dead letters into Kafka (the market producer's sink), with confluent-kafka.

Key = symbol (so one symbol's ticks stay in one partition, in order), value = ``Tick``
protobuf; dead letters go to their own topic as ``DeadLetter`` with the reason and raw bytes.
The producer (:func:`hft.bus.client.make_producer`) is idempotent with ``acks=all``; librdkafka
retries a send until ``message.timeout.ms``. Send latency (produce → broker ack, librdkafka's
own ``Message.latency()``) is sampled every ``latency_every`` messages. A send that fails for
good is counted and logged and sets :attr:`KafkaTickSink.failed`, so the process can stop
instead of losing data silently.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from hft.bus.client import make_consumer, make_producer
from hft.config import Settings
from hft.market.ticks import Tick, dead_letter_bytes, decode_tick

log = logging.getLogger("hft.market.kafka")

__all__ = ["KafkaTickSink", "last_trade_ids", "make_producer"]


class KafkaTickSink:
    """A :class:`hft.market.stream.TickSink` that sends to Kafka."""

    def __init__(
        self,
        producer: Producer,
        topic: str,
        dlq_topic: str,
        latency_every: int = 50,
        on_latency: Callable[[float], None] | None = None,
        poll_every: int = 32,
    ) -> None:
        self.producer = producer
        self.topic = topic
        self.dlq_topic = dlq_topic
        self.latency_every = latency_every
        self.on_latency = on_latency
        self.sent = 0
        self.delivered = 0
        self.dead = 0
        self.errors = 0
        self.failed: BaseException | None = None
        # delivery reports are served every poll_every sends (and by service()): a poll per tick
        # was a call into librdkafka per tick for nothing (sending runs on librdkafka's threads)
        self.poll_every = poll_every
        self._produce = producer.produce
        self._poll = producer.poll

    def tick(self, tick: Tick) -> None:
        """Send one tick (asynchronously; delivery reports are served by the next calls)."""
        value = tick.SerializeToString()
        self.sent += 1
        cb = (
            self._on_sampled
            if self.on_latency is not None and self.sent % self.latency_every == 0
            else self._on_delivery
        )
        while True:
            try:
                self._produce(self.topic, value, tick.symbol.encode(), on_delivery=cb)
                break
            except BufferError:  # the local queue is full: the broker is slow or away; wait for room
                self._poll(0.05)
        if self.sent % self.poll_every == 0:
            self._poll(0)

    def _on_delivery(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            self._on_error(KafkaException(err))
        else:
            self.delivered += 1

    def _on_sampled(self, err: KafkaError | None, msg: Message) -> None:
        self._on_delivery(err, msg)
        latency = msg.latency()
        if err is None and latency is not None and self.on_latency is not None:
            self.on_latency(latency)

    def dead_letter(self, reason: str, raw: bytes, receive_time_ns: int, stream: str) -> None:
        """Send one refused input with its reason to the dead-letter topic."""
        self.dead += 1
        log.warning("dead letter (%s): %r", reason, raw[:200])
        self._produce(
            self.dlq_topic,
            dead_letter_bytes(reason, raw, receive_time_ns, stream),
            stream.encode() or None,
            on_delivery=self._on_dead_delivery,
        )
        self._poll(0)

    def _on_dead_delivery(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            self._on_error(KafkaException(err))

    def _on_error(self, exc: BaseException) -> None:
        self.errors += 1
        if self.failed is None:
            self.failed = exc
            log.error("Kafka send failed for good: %r", exc)

    def service(self) -> None:
        """Serve delivery reports (call now and then while no tick arrives)."""
        self._poll(0)

    def flush(self, timeout_s: float = 30.0) -> int:
        """Wait until every sent message is acknowledged; return how many are still unacknowledged."""
        return int(self.producer.flush(timeout_s))


def last_trade_ids(
    settings: Settings, topic: str, symbols: list[str], tail: int = 2000, timeout_s: float = 20.0
) -> dict[str, int]:
    """The highest trade id per symbol among the last ``tail`` messages of each partition.

    What the producer already delivered before a crash or restart: the stream client resumes
    from there (REST catch-up) instead of from whatever the live stream shows first.
    """
    wanted = set(symbols)
    consumer: Consumer = make_consumer(settings, group=f"{topic}.resume", client_id="market-producer-resume")
    try:
        md = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
        if md is None or md.error is not None:
            return {}
        todo: dict[int, int] = {}
        assign = []
        for p in sorted(md.partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
            if high > low:
                todo[p] = high
                assign.append(TopicPartition(topic, p, max(low, high - tail)))
        if not assign:
            return {}
        consumer.assign(assign)
        last: dict[str, int] = {}
        deadline = time.monotonic() + timeout_s
        while todo and time.monotonic() < deadline:
            for m in consumer.consume(num_messages=5000, timeout=0.5):
                if m.error() is not None:
                    continue
                t = decode_tick(m.value() or b"")
                if t.symbol in wanted and t.trade_id > last.get(t.symbol, -1):
                    last[t.symbol] = t.trade_id
                offset = m.offset() or 0
                if offset >= todo.get(m.partition() or 0, 0) - 1:
                    todo.pop(m.partition() or 0, None)
        return last
    finally:
        consumer.close()
