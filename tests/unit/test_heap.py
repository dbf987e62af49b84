"""hft.heap.freeze: start-up objects leave the collector's sight; later garbage is still collected."""

from __future__ import annotations

import gc
import weakref

from hft import heap


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


def test_freeze_hides_what_is_alive_and_still_collects_later_cycles() -> None:
    try:
        kept = _Node()
        frozen = heap.freeze()
        assert frozen == gc.get_freeze_count()
        assert frozen > 1000  # the interpreter and pytest alone hold thousands of objects
        assert not any(o is kept for o in gc.get_objects())  # frozen: not tracked by any generation
        later = _Node()
        gone = weakref.ref(later)
        del later
        gc.collect()
        assert gone() is None  # a cycle made after the freeze is collected as usual
        # freezing again first unfreezes, so a replaced object's cycle is collected
        ref = weakref.ref(kept)
        del kept
        heap.freeze()
        assert ref() is None
    finally:
        gc.unfreeze()
