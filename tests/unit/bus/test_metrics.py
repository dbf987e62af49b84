"""BatchHistogram gives a histogram exactly what per-value observes give it."""

from __future__ import annotations

import random

from prometheus_client import CollectorRegistry, Histogram

from hft.bus.metrics import BatchHistogram

BUCKETS = (0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0)


def _samples(registry: CollectorRegistry, name: str) -> dict[str, float]:
    return {
        f"{s.name}{sorted(s.labels.items())}": s.value
        for m in registry.collect()
        for s in m.samples
        if s.name.startswith(name) and not s.name.endswith("_created")
    }


def test_batched_observes_equal_per_value_observes() -> None:
    reg = CollectorRegistry()
    plain = Histogram("plain_seconds", "per value", buckets=BUCKETS, registry=reg)
    batched = Histogram("batched_seconds", "batched", buckets=BUCKETS, registry=reg)
    b = BatchHistogram(batched)
    rng = random.Random(7)
    values = [rng.expovariate(1000) for _ in range(5000)] + list(BUCKETS) + [0.0, 5.0, 1e9]
    for i, v in enumerate(values):
        plain.observe(v)
        b.observe(v)
        if i % 97 == 0:
            b.flush()
    assert _samples(reg, "batched_seconds")["batched_seconds_count[]"] < len(values)  # not flushed yet
    b.flush()
    b.flush()  # nothing new: no change
    got = {k.replace("batched", "plain"): v for k, v in _samples(reg, "batched_seconds").items()}
    want = _samples(reg, "plain_seconds")
    assert got.keys() == want.keys()
    sum_key = "plain_seconds_sum[]"
    assert {k: v for k, v in got.items() if k != sum_key} == {k: v for k, v in want.items() if k != sum_key}
    assert abs(got[sum_key] - want[sum_key]) < 1e-9 * want[sum_key]
