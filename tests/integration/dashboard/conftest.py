"""The dashboard's numbers against the real PostgreSQL of the test stack, with real recorded trades."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from hft.config import Settings

TRADE_FILES = {
    "BTCUSDT": "trades/spot_BTCUSDT_trades_2024-08-08T2354Z_2024-08-09T0005Z.csv.gz",
    "ETHUSDT": "trades/spot_ETHUSDT_trades_2024-08-08T2354Z_2024-08-09T0005Z.csv.gz",
}


@pytest.fixture(scope="session")
def book_engine(stack: Any, stack_settings: Settings) -> Engine:
    """The market database, migrated to head."""
    from hft.storage.db import engine, migrate

    migrate(stack_settings)
    return engine(stack_settings)


@pytest.fixture(scope="session")
def spot_trades(book_engine: Engine, stack_settings: Settings, data_dir: Path) -> dict[str, list[Any]]:
    """Real BTCUSDT and ETHUSDT spot trades (archive files) in market.ticks, through the storage writer."""
    from hft.market.replay import read_trade_file
    from hft.schema.market_pb2 import Tick
    from hft.storage.ticks import TickWriter

    out = {}
    writer = TickWriter(stack_settings)
    try:
        for symbol, rel in TRADE_FILES.items():
            trades = read_trade_file(data_dir / rel, symbol)
            writer.write(
                [
                    Tick(
                        symbol=t.symbol,
                        trade_id=t.trade_id,
                        price=float(t.price),
                        quantity=float(t.quantity),
                        buyer_is_maker=t.buyer_is_maker,
                        trade_time_ns=t.trade_time_ms * 1_000_000,
                        event_time_ns=t.event_time_ms * 1_000_000,
                        receive_time_ns=t.trade_time_ms * 1_000_000,
                        source=Tick.SOURCE_ARCHIVE,
                        venue="binance-spot",
                    )
                    for t in trades
                ]
            )
            out[symbol] = trades
    finally:
        writer.close()
    return out


@pytest.fixture
def clean_book(book_engine: Engine) -> Iterator[Engine]:
    """Empty trading tables before and after a test (nothing else writes them in this session then)."""

    def wipe() -> None:
        with book_engine.begin() as conn:
            conn.execute(text("LOCK TABLE trading.intents IN EXCLUSIVE MODE"))
            for table in ("fills", "orders", "intents", "positions", "account", "reports"):
                conn.execute(text(f"DELETE FROM trading.{table}"))

    wipe()
    yield book_engine
    wipe()
