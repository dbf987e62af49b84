"""Fixtures of the feature tests: the shared real bars and trades, read through the project's readers."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from hft.market.ohlcv import read_ohlcv_csv

KLINES = {
    ("BTCUSDT", "15m"): "klines_15m/BTCUSDT_15m_ohlcv_2023-01-01_2025-08-31.csv.gz",
    ("ETHUSDT", "15m"): "klines_15m/ETHUSDT_15m_ohlcv_2023-01-01_2025-08-31.csv.gz",
    ("BTCUSDT", "1m"): "klines_1m/BTCUSDT_1m_ohlcv_2025-05-20_2025-08-18.csv.gz",
    ("ETHUSDT", "1m"): "klines_1m/ETHUSDT_1m_ohlcv_2025-05-20_2025-08-18.csv.gz",
}
FULL_KLINES = "klines_15m/BTCUSDT_15m_klines_2024-01-01_2024-07-11.csv.gz"
_cache: dict[str, pd.DataFrame] = {}


def load_klines(data_dir: Path, rel: str) -> pd.DataFrame:
    """Read a kline file once per test session."""
    if rel not in _cache:
        _cache[rel] = read_ohlcv_csv(data_dir / rel)
    return _cache[rel]


def read_trades(path: Path) -> pd.DataFrame:
    """Read a trades file of shared/data/binance/trades (Binance archive column order, ms times).

    The market-data area has no trades importer yet; this reads the documented columns
    (``id,price,qty,quote_qty,time,is_buyer_maker[,is_best_match]``) with pandas.
    """
    df = pd.read_csv(path)
    return pd.DataFrame(
        {
            "trade_id": df["id"].astype("int64"),
            "trade_time_ns": df["time"].astype("int64") * 1_000_000,
            "price": df["price"].astype("float64"),
            "quantity": df["qty"].astype("float64"),
            "buyer_is_maker": df["is_buyer_maker"].astype(str).str.lower().eq("true"),
        }
    )


@pytest.fixture(scope="session")
def btc_15m(data_dir: Path) -> pd.DataFrame:
    """BTCUSDT 15m OHLCV bars 2023-01 .. 2025-08."""
    return load_klines(data_dir, KLINES[("BTCUSDT", "15m")])
