"""Helpers shared by the Kafka consumer processes (tick ingestor, feature calculator)."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def partition_lag(consumer: Any) -> dict[int, int]:
    """Messages between each assigned partition's position and its end (empty before assignment)."""
    parts = consumer.assignment()
    if not parts:
        return {}
    ends = consumer.end_offsets(list(parts))
    return {tp.partition: max(ends.get(tp, 0) - consumer.position(tp), 0) for tp in parts}


def report_lag(consumer: Any, gauge: Any) -> None:
    """Set ``gauge`` (labelled by partition) to each partition's lag; a broker error skips one report."""
    from kafka.errors import KafkaError

    try:
        lags = partition_lag(consumer)
    except KafkaError as exc:
        log.debug("lag not measured: %s", exc)
        return
    for partition, lag in lags.items():
        gauge.labels(str(partition)).set(lag)
