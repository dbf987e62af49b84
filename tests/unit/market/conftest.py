"""Fixtures of the market unit tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from hft.market.replay import Timeline, load_source


@pytest.fixture(scope="session")
def spot_timeline(data_dir: Path) -> Timeline:
    """The default replay recording: 2024-08-08/09 BTCUSDT + ETHUSDT spot captures (loaded once)."""
    return load_source(data_dir, ["BTCUSDT", "ETHUSDT"])
