"""The stream processes' runtime without a broker: retry, the loop's transient handling, stop."""

from __future__ import annotations

import random
import threading

import pytest

from hft.bus.retry import Stopped, backoff_delays, retry
from hft.bus.runtime import Loop
from hft.config import TransientError


def test_retry_returns_once_the_dependency_is_back_and_reports_each_failure() -> None:
    calls: list[int] = []
    seen: list[str] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 4:
            raise TransientError(f"down {len(calls)}")
        return "written"

    out = retry(
        flaky, threading.Event(), "a write", delays=lambda _n: 0.0, on_retry=lambda e: seen.append(str(e))
    )
    assert out == "written"
    assert len(calls) == 4
    assert seen == ["down 1", "down 2", "down 3"]


def test_retry_raises_stopped_when_asked_to_stop_while_waiting() -> None:
    stop = threading.Event()
    stop.set()
    with pytest.raises(Stopped):
        retry(lambda: (_ for _ in ()).throw(TransientError("down")), stop, "a write", delays=lambda _n: 5.0)


def test_retry_lets_a_bug_through() -> None:
    with pytest.raises(ZeroDivisionError):
        retry(lambda: 1 // 0, threading.Event(), "a division", delays=lambda _n: 0.0)


def test_backoff_grows_to_its_cap_with_full_jitter() -> None:
    delay = backoff_delays(0.5, 8.0, random.Random(7))
    for attempt in range(30):
        d = delay(attempt)
        assert 0.0 <= d <= min(8.0, 0.5 * 2**attempt)
    assert max(delay(20) for _ in range(200)) > 4.0  # the cap is reached, not just the base


class _Counting(Loop):
    name = "counting"

    def __init__(self, fail_first: int, stop_after: int) -> None:
        super().__init__()
        self.backoff = lambda _n: 0.0
        self.fail_first, self.stop_after = fail_first, stop_after
        self.rounds = self.handled = self.recovered = 0
        self.finished = self.closed = False

    def run_once(self) -> int:
        self.rounds += 1
        if self.rounds <= self.fail_first:
            raise TransientError("redis down")
        self.handled += 1
        if self.handled >= self.stop_after:
            self.stop.set()
        return 1

    def on_transient(self, exc: BaseException) -> None:
        self.recovered += 1

    def finish(self) -> None:
        self.finished = True

    def close(self) -> None:
        self.closed = True


def test_loop_backs_off_transient_errors_then_finishes_and_closes_on_stop() -> None:
    loop = _Counting(fail_first=3, stop_after=5)
    loop.run()
    assert (loop.rounds, loop.handled, loop.recovered) == (8, 5, 3)
    assert loop.finished
    assert loop.closed


def test_loop_crashes_on_a_bug_but_still_closes_and_does_not_finish() -> None:
    class Broken(_Counting):
        def run_once(self) -> int:
            raise KeyError("a bug")

    loop = Broken(fail_first=0, stop_after=1)
    with pytest.raises(KeyError):
        loop.run()
    assert loop.closed
    assert not loop.finished  # the work in hand is not committed after a crash


def test_a_loop_without_transient_errors_crashes_on_them() -> None:
    """The feature calculator declares none: a half-folded batch cannot be retried."""
    loop = _Counting(fail_first=1, stop_after=1)
    loop.transient = ()
    with pytest.raises(TransientError):
        loop.run()
    assert loop.closed
