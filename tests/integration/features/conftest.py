"""Fixtures of the feature integration tests: the stack's database migrated, real klines in market.bars.

The bars are real Binance 15m klines stored under test-only symbol names (``FTBTC``, ``FTETH``)
so that other areas' tests, which share the database and Redis in CI, never see them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from hft.config import Settings
from hft.market.ohlcv import read_ohlcv_csv

SYMBOLS = {
    "FTBTC": "klines_15m/BTCUSDT_15m_klines_2024-01-01_2024-07-11.csv.gz",  # with trade columns
    "FTETH": "klines_15m/ETHUSDT_15m_ohlcv_2023-01-01_2025-08-31.csv.gz",
}  # OHLCV only
START = pd.Timestamp("2024-02-01", tz="UTC")
N_BARS = 1500  # bars loaded per symbol from START (warm-up is 524)


@pytest.fixture(scope="session")
def feature_settings(stack: object, stack_settings: Settings) -> Settings:
    """Settings of the test stack with the schema at head."""
    from hft.storage import db

    db.migrate(stack_settings)
    return stack_settings


@pytest.fixture(scope="session")
def kline_bars(data_dir: Path) -> dict[str, pd.DataFrame]:
    """The real klines each test symbol holds in market.bars."""
    out = {}
    for sym, rel in SYMBOLS.items():
        df = read_ohlcv_csv(data_dir / rel)
        out[sym] = df[df.index >= START].iloc[:N_BARS]
    return out


def clear_symbols(settings: Settings) -> None:
    """Remove the test symbols' bars and features (database and online store)."""
    import redis

    from hft.storage import db

    with db.connect(settings) as conn:
        conn.execute("DELETE FROM market.ticks WHERE symbol = ANY(%s)", (list(SYMBOLS),))
        conn.execute("DELETE FROM market.bars WHERE symbol = ANY(%s)", (list(SYMBOLS),))
        conn.execute("DELETE FROM features.bar_features WHERE symbol = ANY(%s)", (list(SYMBOLS),))
        conn.commit()
    r = redis.Redis.from_url(settings.redis_dsn)
    for sym in SYMBOLS:
        for key in r.scan_iter(match=f"*{sym}*"):  # Feast's keys embed the entity value
            r.delete(key)


@pytest.fixture
def loaded_bars(
    feature_settings: Settings, kline_bars: dict[str, pd.DataFrame]
) -> Iterator[dict[str, pd.DataFrame]]:
    """market.bars filled with the test symbols' klines (storage's own kline writer)."""
    from hft.storage import db
    from hft.storage.bars import upsert_klines

    clear_symbols(feature_settings)
    with db.connect(feature_settings) as conn:
        for sym, df in kline_bars.items():
            upsert_klines(conn, df, sym, "15m")
    yield kline_bars
    clear_symbols(feature_settings)
