"""Fixtures for the orchestration tests: the embedded stack with shared Binance data loaded.

Bars: real 15m klines of BTCUSDT and ETHUSDT (2024-07-20 → 2024-08-09 06:00, the features'
warm-up included); ticks: the real spot trades captured 2024-08-08 23:54 → 2024-08-09 00:05,
through the project's own importers and writers. Airflow's metadata tables live in the stack's
PostgreSQL; every DAG runs with ``airflow dags test`` (in-process, no scheduler) in a
subprocess, because Airflow reads its configuration once per process.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from hft.config import Settings

KLINES_START, KLINES_END = "2024-07-20 00:00", "2024-08-09 05:45"
TRADE_FILES = {
    "BTCUSDT": "spot_BTCUSDT_trades_2024-08-08T2354Z_2024-08-09T0005Z.csv.gz",
    "ETHUSDT": "spot_ETHUSDT_trades_2024-08-08T2354Z_2024-08-09T0005Z.csv.gz",
}
GOOD_PARTITION = {"start": "2024-08-09T00:00:00+00:00", "end": "2024-08-09T01:00:00+00:00"}
FEATURES_START = "2024-07-26T00:00:00+00:00"
BAD_PARTITION = {"start": "2024-08-08T23:00:00+00:00", "end": "2024-08-09T00:00:00+00:00"}


def load_klines(settings: Settings, data_dir: Path, start: str = KLINES_START, end: str = KLINES_END) -> int:
    """Upsert the real 15m klines of both symbols for [start, end] into market.bars."""
    from hft.market.ohlcv import read_ohlcv_csv
    from hft.storage import db
    from hft.storage.bars import upsert_klines

    n = 0
    with db.connect(settings) as conn:
        for sym in ("BTCUSDT", "ETHUSDT"):
            df = read_ohlcv_csv(
                data_dir / "klines_15m" / f"{sym}_15m_ohlcv_2023-01-01_2025-08-31.csv.gz", symbol=sym
            )
            n += upsert_klines(conn, df.loc[start:end], sym, "15m")
    return n


def load_ticks(settings: Settings, data_dir: Path) -> int:
    """Write the captured spot trades of both symbols into market.ticks with the tick writer."""
    from hft.market.replay import read_trade_file
    from hft.schema.market_pb2 import Tick
    from hft.storage.ticks import TickWriter

    received = time.time_ns()  # when this fixture read the archive file: not a trade time
    ticks = []
    for sym, name in TRADE_FILES.items():
        for t in read_trade_file(data_dir / "trades" / name, sym):
            ticks.append(
                Tick(
                    symbol=sym,
                    trade_id=t.trade_id,
                    price=float(t.price),
                    quantity=float(t.quantity),
                    buyer_is_maker=t.buyer_is_maker,
                    trade_time_ns=t.trade_time_ms * 1_000_000,
                    event_time_ns=t.event_time_ms * 1_000_000,
                    receive_time_ns=received,
                    source=Tick.SOURCE_ARCHIVE,
                    venue="binance-spot",
                )
            )
    writer = TickWriter(settings)
    try:
        return writer.write(ticks).inserted
    finally:
        writer.close()


def backfill_history(
    settings: Settings, start: str = FEATURES_START, end: str = GOOD_PARTITION["start"]
) -> int:
    """Backfill features before the tested partition (the drift check's reference and window)."""
    from datetime import datetime

    from hft.features.backfill import backfill

    lo, hi = datetime.fromisoformat(start), datetime.fromisoformat(end)
    return sum(backfill(settings, sym, "15m", lo, hi, materialize=False) for sym in ("BTCUSDT", "ETHUSDT"))


@pytest.fixture(scope="session")
def market_data(stack: object, stack_settings: Settings, data_dir: Path) -> Settings:
    """The test stack with schema, the shared bars and ticks, and Airflow's metadata tables."""
    from hft.devstack.airflow import migrate_metadata
    from hft.storage import db

    db.migrate(stack_settings)
    load_klines(stack_settings, data_dir)
    load_ticks(stack_settings, data_dir)
    backfill_history(stack_settings)
    migrate_metadata(stack_settings)
    return stack_settings


DagTest = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="session")
def dag_test(market_data: Settings) -> DagTest:
    """Run ``airflow dags test DAG_ID -c CONF`` against the test stack; return the finished process."""
    from hft.devstack.airflow import run_airflow

    def run(
        dag_id: str,
        conf: dict[str, object] | None = None,
        timeout: float = 300,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        args = ["dags", "test", dag_id]
        if conf:
            args += ["-c", json.dumps(conf)]
        return run_airflow(market_data, *args, timeout=timeout, check=False, extra_env=env)

    return run
