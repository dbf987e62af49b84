"""Tick ingestor: Kafka ``market_ticks`` → ``market.ticks`` (+ 1m/15m bars), idempotent.

Run by the supervisor (``python -m streamers.tick_ingestor`` / ``hft run tick-ingestor``); the
pipeline is :class:`hft.storage.ingest.Ingestor`, the process plumbing :func:`hft.bus.runtime.run_main`.
"""

from __future__ import annotations

import argparse
import sys
import threading

from hft.bus.runtime import run_main
from hft.config import Settings
from hft.storage.ingest import Ingestor


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batch-max", type=int, default=None, help="most ticks per batch (HFT_INGEST_BATCH_MAX)")
    p.add_argument(
        "--linger-ms", type=int, default=None, help="wait for a batch to fill (HFT_INGEST_LINGER_MS)"
    )


def _build(args: argparse.Namespace, settings: Settings, stop: threading.Event) -> Ingestor:
    batch_max = args.batch_max or settings.ingest_batch_max
    linger_ms = settings.ingest_linger_ms if args.linger_ms is None else args.linger_ms
    return Ingestor(settings, batch_max=batch_max, linger_ms=linger_ms, stop=stop)


def main(argv: list[str] | None = None) -> int:
    """Run the ingestor until SIGTERM/SIGINT."""
    return run_main(
        "tick-ingestor",
        __doc__.splitlines()[0],
        _build,
        argv,
        metrics_port="metrics_tick_ingestor",
        add_arguments=_arguments,
    )


if __name__ == "__main__":
    sys.exit(main())
