"""Helpers shared by the Kafka consumer processes (tick ingestor, feature calculator)."""

from __future__ import annotations

from typing import Any


def partition_lag(consumer: Any) -> dict[int, int]:
    """Messages between each assigned partition's position and its end (empty before assignment)."""
    parts = consumer.assignment()
    if not parts:
        return {}
    ends = consumer.end_offsets(list(parts))
    return {tp.partition: max(ends.get(tp, 0) - consumer.position(tp), 0) for tp in parts}
