"""Logging set-up shared by every process."""

from __future__ import annotations

import logging


def setup_logging(level: str = "INFO", name: str = "hft") -> None:
    """Configure the root logger once for a process."""
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format=f"%(asctime)s {name} %(levelname)s %(name)s: %(message)s",
    )
