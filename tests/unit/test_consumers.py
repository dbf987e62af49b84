from __future__ import annotations

from dataclasses import dataclass

from hft.consumers import partition_lag


@dataclass(frozen=True)
class _TP:
    topic: str
    partition: int


class _Consumer:
    """A stand-in with kafka-python's three calls (pure arithmetic under test, no broker needed)."""

    def __init__(self, positions: dict[_TP, int], ends: dict[_TP, int]) -> None:
        self._positions, self._ends = positions, ends

    def assignment(self) -> set[_TP]:
        return set(self._positions)

    def end_offsets(self, parts: list[_TP]) -> dict[_TP, int]:
        return {tp: self._ends[tp] for tp in parts if tp in self._ends}

    def position(self, tp: _TP) -> int:
        return self._positions[tp]


def test_lag_is_end_minus_position_never_negative_and_empty_before_assignment() -> None:
    a, b, c = _TP("t", 0), _TP("t", 1), _TP("t", 2)
    consumer = _Consumer({a: 10, b: 7, c: 3}, {a: 25, b: 5})
    assert partition_lag(consumer) == {0: 15, 1: 0, 2: 0}
    assert partition_lag(_Consumer({}, {})) == {}


class _GroupConsumer:
    """A stand-in for the four calls AssignmentGuard makes. kafka-python's leader race (assigning
    before it has the topic's partition metadata) cannot be triggered on demand against the real
    broker, so the guard's decisions are tested here; the streamers run it against the real one."""

    def __init__(self, assigned: set[int], partitions: set[int] | None) -> None:
        self.assigned, self.partitions = assigned, partitions
        self.calls: list[str] = []

    def assignment(self) -> set[int]:
        return self.assigned

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return self.partitions

    def unsubscribe(self) -> None:
        self.calls.append("unsubscribe")

    def subscribe(self, topics: list[str], listener: object = None) -> None:
        self.calls.append(f"subscribe {topics[0]}")


def test_assignment_guard_rejoins_only_when_a_finished_rebalance_left_it_empty_too_long() -> None:
    from hft.consumers import AssignmentGuard

    now = [0.0]
    guard = AssignmentGuard("market_ticks", after_s=20, max_after_s=60, clock=lambda: now[0])
    stuck = _GroupConsumer(set(), {0, 1, 2, 3})
    assert not guard.check(stuck)  # no rebalance finished yet: a join may be in progress
    guard.listener.on_partitions_revoked(set())
    guard.listener.on_partitions_assigned(set())  # the empty assignment
    now[0] = 19.0
    assert not guard.check(stuck)  # kafka-python usually rejoins by itself within ~0.1 s
    guard.listener.on_partitions_revoked(set())  # ...and it did: a rejoin is under way
    now[0] = 60.0
    assert not guard.check(stuck)
    guard.listener.on_partitions_assigned(set())  # it ended empty again, and stays so
    now[0] = 79.0
    assert not guard.check(stuck)
    now[0] = 80.0
    assert guard.check(stuck)
    assert stuck.calls == ["unsubscribe", "subscribe market_ticks"]
    # still empty after the rejoin (a group with more members than partitions): back off, 40 s
    guard.listener.on_partitions_assigned(set())
    now[0] = 119.0
    assert not guard.check(stuck)
    now[0] = 120.0
    assert guard.check(stuck)
    # assigned at last: back to the first wait
    guard.listener.on_partitions_assigned({0})
    guard.listener.on_partitions_revoked({0})
    guard.listener.on_partitions_assigned(set())
    now[0] = 140.0
    assert guard.check(stuck)
    assert guard.rejoins == 3


def test_assignment_guard_leaves_a_topic_without_partitions_alone() -> None:
    from hft.consumers import AssignmentGuard

    now = [0.0]
    guard = AssignmentGuard("market_ticks", after_s=1, clock=lambda: now[0])
    consumer = _GroupConsumer(set(), None)
    guard.listener.on_partitions_assigned(set())
    now[0] = 5.0
    assert not guard.check(consumer)
    assert consumer.calls == []
