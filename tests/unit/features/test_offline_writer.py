"""The calculator's offline writer thread: order, retries while PostgreSQL is down, errors, stop.

No service: the write is a function of the test's (the real one is covered with PostgreSQL in
tests/integration/features/test_offline_writer.py and the streaming fault test's restarts).
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from hft.bus import retry as retry_mod
from hft.config import TransientError
from hft.features.streaming import OfflineWriter


@pytest.fixture(autouse=True)
def _fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retry_mod, "backoff_delays", lambda *a, **k: lambda attempt: 0.01)


def test_batches_are_written_in_order_and_wait_sees_each() -> None:
    seen: list[Any] = []
    w = OfflineWriter(lambda closed: seen.append(closed) or 0.001, threading.Event())
    seqs = [w.submit([i]) for i in range(50)]  # type: ignore[list-item]
    assert seqs == list(range(1, 51))
    assert w.wait(50, 10)
    assert seen == [[i] for i in range(50)]
    assert w.done == 50
    w.close()


def test_a_transient_failure_retries_the_same_batch_and_holds_the_ones_behind() -> None:
    calls: list[Any] = []
    down = threading.Event()
    down.set()

    def write(closed: list[Any]) -> float:
        calls.append(closed)
        if closed == ["a"] and down.is_set():
            raise TransientError("PostgreSQL unavailable")
        return 0.0

    w = OfflineWriter(write, threading.Event())
    w.submit(["a"])  # type: ignore[list-item]
    second = w.submit(["b"])  # type: ignore[list-item]
    assert not w.wait(second, 0.3), "a batch behind an unwritten one counted as written"
    assert calls
    assert all(c == ["a"] for c in calls)
    down.clear()
    assert w.wait(second, 10)
    assert calls[-2:] == [["a"], ["b"]]
    w.check()  # a transient failure is not an error
    w.close()


def test_a_bug_in_the_write_reaches_the_consuming_thread() -> None:
    def broken(closed: list[Any]) -> float:
        raise ValueError("a bug in the offline write")

    w = OfflineWriter(broken, threading.Event())
    seq = w.submit([])
    assert not w.wait(seq, 10)
    with pytest.raises(ValueError, match="a bug"):
        w.check()
    with pytest.raises(ValueError, match="a bug"):
        w.submit([])
    w.close()


def test_stopped_while_retrying_leaves_the_batch_unwritten_without_an_error() -> None:
    stop = threading.Event()

    def down(closed: list[Any]) -> float:
        stop.set()  # the process is asked to stop while PostgreSQL is down
        raise TransientError("PostgreSQL unavailable")

    w = OfflineWriter(down, stop)
    seq = w.submit([])
    assert not w.wait(seq, 10)
    assert w.done == 0
    w.check()
    w.close()
