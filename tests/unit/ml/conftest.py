"""Fixtures of the model tests: a real BTCUSDT slice (through the project's importer) and synthetic data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hft.market.ohlcv import read_ohlcv_csv


@pytest.fixture(scope="session")
def btc_bars(data_dir: Path) -> pd.DataFrame:
    """BTCUSDT 15m bars of 2024 (real, read-only shared data)."""
    bars = read_ohlcv_csv(data_dir / "klines_15m" / "BTCUSDT_15m_ohlcv_2023-01-01_2025-08-31.csv.gz")
    return bars.loc["2024-01-01":"2024-12-31"]


def synthetic_xy(n: int = 4000, k: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features with a real (noisy) signal in columns 0 and 1; times 15 minutes apart."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, k)).astype(np.float32)
    logit = 0.8 * X[:, 0] - 0.5 * X[:, 1] + 0.3 * np.roll(X[:, 2], 1)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float64)
    times = (np.arange(n, dtype=np.int64) + 1) * 15 * 60 * 10**9
    return X, y, times
