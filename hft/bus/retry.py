"""Retrying a dependency that comes back (database, Redis, broker): full-jitter backoff, until stopped."""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from typing import TypeVar

from hft.config import TransientError

log = logging.getLogger(__name__)
T = TypeVar("T")


class Stopped(Exception):
    """The process was asked to stop while waiting to retry."""


def backoff_delays(
    base_s: float = 0.5, cap_s: float = 30.0, rng: random.Random | None = None
) -> Callable[[int], float]:
    """Full-jitter exponential backoff: attempt n waits uniform(0, min(cap, base * 2**n))."""
    r = rng or random.Random()  # noqa: S311 - jitter, not cryptography

    def delay(attempt: int) -> float:
        return r.uniform(0, min(cap_s, base_s * 2 ** min(attempt, 20)))

    return delay


def retry(
    fn: Callable[[], T],
    stop: threading.Event,
    what: str,
    *,
    errors: tuple[type[BaseException], ...] = (TransientError,),
    delays: Callable[[int], float] | None = None,
    on_retry: Callable[[BaseException], None] | None = None,
) -> T:
    """``fn()`` until it returns, backing off after each of ``errors``; :class:`Stopped` when
    ``stop`` is set during a wait (the caller decides what an unfinished call means)."""
    delay = delays or backoff_delays(0.2, 5.0)
    attempt = 0
    while True:
        try:
            return fn()
        except errors as exc:
            wait = delay(attempt)
            attempt += 1
            if on_retry is not None:
                on_retry(exc)
            log.warning("%s failed, retry %d in %.2fs: %s", what, attempt, wait, exc)
            if stop.wait(wait):
                raise Stopped(what) from exc
