"""Feature calculator: Kafka ``market_ticks`` -> bars -> features -> online + offline stores.

Run by the supervisor (``python -m streamers.feature_calculator`` / ``hft run feature-calculator``);
the loop is :class:`hft.features.streaming.Calculator`, the process plumbing
:func:`hft.bus.runtime.run_main`.
"""

from __future__ import annotations

import argparse
import sys
import threading

from hft.bus.runtime import run_main
from hft.config import Settings
from hft.features.streaming import Calculator


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batch-max", type=int, default=2000, help="most ticks per poll")


def _build(args: argparse.Namespace, settings: Settings, stop: threading.Event) -> Calculator:
    return Calculator(settings, batch_max=args.batch_max, stop=stop)


def main(argv: list[str] | None = None) -> int:
    """Run the calculator until SIGTERM/SIGINT."""
    return run_main(
        "feature-calculator",
        __doc__.splitlines()[0],
        _build,
        argv,
        metrics_port="metrics_feature_calculator",
        add_arguments=_arguments,
    )


if __name__ == "__main__":
    sys.exit(main())
