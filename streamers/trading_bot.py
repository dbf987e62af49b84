"""Trading bot: closed bars → ``POST /predict`` → risk checks → order intent → Celery.

Run by the supervisor (``python -m streamers.trading_bot`` / ``hft run trading-bot``); the loop is
:class:`hft.trading.runner.BotProcess`, the process plumbing :func:`hft.bus.runtime.run_main`.
"""

from __future__ import annotations

import argparse
import sys
import threading

from hft.bus.runtime import run_main
from hft.config import Settings
from hft.trading.runner import BotProcess


def _build(_args: argparse.Namespace, settings: Settings, stop: threading.Event) -> BotProcess:
    return BotProcess(settings, stop)


def main(argv: list[str] | None = None) -> int:
    """Run the bot until SIGTERM/SIGINT."""
    return run_main(
        "trading-bot",
        __doc__.splitlines()[0],
        _build,
        argv,
        metrics_port="metrics_trading_bot",
        needs_topics=False,  # it reads a Redis stream
        quiet_loggers=["httpx"],  # one line per /predict call drowns the log
    )


if __name__ == "__main__":
    sys.exit(main())
