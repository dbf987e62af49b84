"""A calculator that takes a symbol over warms it up from ``market.bars`` only once the tick
ingestor has stored every tick before the symbol's first one (its committed offset reached it):
the bars it folds are then final, not the ingestor's bar in the making (docs/bench.md, Left 8).
On the real broker: the ingestor's commits are made by hand, so each outcome is forced."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from hft.bus.client import TICK_INGESTOR_GROUP, commit, make_consumer
from hft.bus.topics import ensure_topics
from hft.config import Settings

pytestmark = pytest.mark.integration


def test_a_warm_up_waits_for_the_ingestor_to_store_the_ticks_before_it(feature_settings: Settings) -> None:
    from hft.features.streaming import WARMUPS, Calculator

    run = uuid.uuid4().hex[:8]
    s = feature_settings.model_copy(
        update={"topic_ticks": f"wu_ticks_{run}", "topic_dlq": f"wu_ticks_{run}.dlq", "kafka_partitions": 1}
    )
    ensure_topics(s)
    tp = (s.topic_ticks, 0)
    # the ingestors' group of its own (the real one is TICK_INGESTOR_GROUP): a commit from outside
    # a group with live members is refused, and other tests run ingestors
    group = f"{TICK_INGESTOR_GROUP}-{run}"
    calc = Calculator(s, warmup_wait_s=1.0, ingestor_group=group)
    ingestor = make_consumer(s, group, f"test-ingestor-{run}")
    try:
        # no ingestor ever read the partition: nothing to wait for
        t0 = time.monotonic()
        assert calc.await_stored(tp, 10) == "no_ingestor"
        assert time.monotonic() - t0 < 1.0
        # the ingestor is behind: the warm-up waits its limit, then goes on with what is stored
        commit(ingestor, {tp: 5})
        t0 = time.monotonic()
        timed_out = WARMUPS.labels("timed_out")._value.get()
        assert calc.await_stored(tp, 10) == "timed_out"
        assert time.monotonic() - t0 >= 1.0
        assert WARMUPS.labels("timed_out")._value.get() == timed_out + 1
        # the ingestor catches up while the calculator waits: the warm-up goes on at once
        calc.warmup_wait_s = 30.0
        threading.Timer(0.5, commit, (ingestor, {tp: 10})).start()
        t0 = time.monotonic()
        assert calc.await_stored(tp, 10) == "stored"
        waited = time.monotonic() - t0
        assert 0.4 <= waited < 10, waited
        # already stored: no wait at all
        assert calc.await_stored(tp, 7) == "stored"
    finally:
        ingestor.close()
        calc.close()
