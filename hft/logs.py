"""Logging set-up shared by every process."""

from __future__ import annotations

import faulthandler
import logging
import signal
import sys


def setup_logging(level: str = "INFO", name: str = "hft") -> None:
    """Configure the root logger once for a process; ``kill -USR1 <pid>`` then writes every
    thread's stack to its stderr (its log under the supervisor), for a process that looks stuck."""
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format=f"%(asctime)s {name} %(levelname)s %(name)s: %(message)s",
    )
    if hasattr(signal, "SIGUSR1"):
        faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True)
