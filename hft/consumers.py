"""Helpers shared by the Kafka consumer processes (tick ingestor, feature calculator)."""

from __future__ import annotations

import logging
import time
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


class AssignmentGuard:
    """Rejoin the consumer group when a finished rebalance left this consumer without partitions.

    kafka-python 3.0's group leader sometimes assigns before it has the topic's partition
    metadata (its log: "No partition metadata for topic market_ticks", then an empty
    assignment). It normally notices when the metadata arrives and rejoins ~0.1 s later; seen
    after most restarts with a dead member still in the group (docs/bench.md finding 11). If
    that second rejoin does not happen, the process heartbeats happily and consumes nothing,
    forever. This guard watches for exactly that end state: the last rebalance assigned nothing,
    the topic has partitions, and it has stayed so for ``after_s`` — then it leaves and rejoins
    (``unsubscribe`` + ``subscribe``). A group with more members than partitions legitimately
    leaves some empty: their rejoins back off (doubling up to ``max_after_s``) so they cost
    the others a rebalance only rarely.

    Use it as the consumer's rebalance listener and call :meth:`check` from the thread that
    polls; it never touches the consumer from the listener callbacks.
    """

    def __init__(self, topic: str, after_s: float = 20.0, max_after_s: float = 600.0,
                 clock: Any = None) -> None:
        from kafka import ConsumerRebalanceListener

        guard = self

        class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
            def on_partitions_revoked(self, revoked: Any) -> None:
                guard._assigned_empty_at = None  # a rebalance started: wait for its outcome

            def on_partitions_assigned(self, assigned: Any) -> None:
                if assigned:
                    guard._assigned_empty_at = None
                    guard._wait_s = guard.after_s
                else:
                    guard._assigned_empty_at = guard._clock()

        self.topic = topic
        self.after_s = after_s
        self.max_after_s = max_after_s
        self._clock = clock or time.monotonic
        self._assigned_empty_at: float | None = None
        self._wait_s = after_s
        self.listener = _Listener()
        self.rejoins = 0

    def check(self, consumer: Any) -> bool:
        """Rejoin if the last rebalance assigned nothing long enough ago; True when it did."""
        since = self._assigned_empty_at
        if since is None or self._clock() - since < self._wait_s:
            return False
        if consumer.assignment() or not consumer.partitions_for_topic(self.topic):
            self._assigned_empty_at = None  # assigned after all, or nothing to assign
            return False
        log.warning("no partitions of %s assigned for %.0f s after the last rebalance: leaving and "
                    "rejoining the group (kafka-python's leader may have assigned without metadata)",
                    self.topic, self._clock() - since)
        self._assigned_empty_at = None
        self._wait_s = min(self._wait_s * 2, self.max_after_s)
        self.rejoins += 1
        consumer.unsubscribe()
        consumer.subscribe([self.topic], listener=self.listener)
        return True
