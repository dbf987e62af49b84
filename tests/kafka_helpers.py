"""Sending test ticks into Kafka through the project's own client factory."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from hft.bus.client import make_producer
from hft.bus.topics import ensure_topics
from hft.config import Settings


def send_ticks(settings: Settings, ticks: Iterable[Any], chunk: int = 0, pause_s: float = 0.0) -> int:
    """Send Ticks to the settings' ticks topic (created when missing), key = symbol; wait for every ack."""
    ensure_topics(settings)
    producer = make_producer(settings, "tests", **{"linger.ms": 5})
    n = 0
    for t in ticks:
        while True:
            try:
                producer.produce(settings.topic_ticks, t.SerializeToString(), t.symbol.encode())
                break
            except BufferError:
                producer.poll(0.1)
        n += 1
        producer.poll(0)
        if chunk and pause_s and n % chunk == 0:
            producer.flush(60)
            time.sleep(pause_s)
    left = producer.flush(60)
    assert left == 0, f"{left} of {n} test ticks not acknowledged by Kafka within 60 s"
    return n
