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
