"""Keep the collector off what a long-running process loaded at start-up (``gc.freeze``).

A process that imports torch, mlflow, feast and pandas holds ~420,000 objects; one full
collection of them took ~430 ms on the 2-core machine (docs/bench.md finding 10), paid by
whatever request or tick is waiting at that moment. Freezing after start-up moves those
objects to a permanent generation the collector skips; they are still freed by reference
counting. Call :func:`freeze` once the process has loaded what it keeps (and again after
replacing a large part of it, such as a model: unfreezing first lets the old one's cycles go).
"""

from __future__ import annotations

import gc


def freeze() -> int:
    """Collect, then freeze everything alive now; return the number of objects frozen."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
