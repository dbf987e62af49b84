"""Metrics on a hot path: a batch's observations added to prometheus_client at once.

``Histogram.observe`` takes two locks and scans the buckets per value, ``Counter.inc`` one lock;
at tens of thousands of ticks a second the feature calculator spent a fifth of its samples there
(py-spy, docs/bench.md Left 3). :class:`BatchHistogram` counts a batch's values per bucket in plain
lists on the consuming thread and hands the counts to the histogram in :meth:`BatchHistogram.flush`;
a scrape sees them one batch later, with the same buckets and sum as per-value observes
(``tests/unit/bus/test_metrics.py`` holds it to that, so a prometheus_client whose internals change
fails there, not in production).
"""

from __future__ import annotations

from bisect import bisect_left

from prometheus_client import Histogram


class BatchHistogram:
    """Observations for an unlabelled :class:`prometheus_client.Histogram`, one thread, flushed per batch."""

    def __init__(self, hist: Histogram) -> None:
        self.hist = hist
        self.bounds: list[float] = list(hist._upper_bounds)  # ends with +Inf
        self.counts = [0] * len(self.bounds)
        self.total = 0.0
        self.n = 0

    def observe(self, value: float) -> None:
        """Count one value (prometheus: the first bucket whose upper bound is >= value)."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value
        self.n += 1

    def flush(self) -> None:
        """Add what was counted since the last flush to the histogram."""
        if not self.n:
            return
        buckets = self.hist._buckets
        for i, c in enumerate(self.counts):
            if c:
                buckets[i].inc(c)
                self.counts[i] = 0
        self.hist._sum.inc(self.total)
        self.total = 0.0
        self.n = 0
