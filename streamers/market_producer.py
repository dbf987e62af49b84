"""Market producer: Binance (or the replay exchange) trade stream → Kafka ``market_ticks``.

Run by the supervisor (``python -m streamers.market_producer`` / ``hft run market-producer``); the
wiring is :func:`hft.market.producer.run`, the process plumbing :func:`hft.bus.runtime.run_async_main`.
SIGTERM stops the stream and flushes the producer before exit.
"""

from __future__ import annotations

import sys

from hft.bus.runtime import run_async_main
from hft.market.producer import run


def main(argv: list[str] | None = None) -> int:
    """Stream until SIGTERM/SIGINT."""
    return run_async_main(
        "market-producer", __doc__.splitlines()[0], run, argv, metrics_port="metrics_market_producer"
    )


if __name__ == "__main__":
    sys.exit(main())
