"""Schema, migrations and kline history on the real database."""

from __future__ import annotations

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest

from hft.config import REPO_ROOT, Settings
from hft.market.ohlcv import read_ohlcv_csv
from hft.schema.market_pb2 import Tick
from hft.storage import bars, db
from hft.storage.ticks import TickWriter

from .conftest import unique_symbol

pytestmark = pytest.mark.integration
KLINES = "klines_15m/BTCUSDT_15m_klines_2024-01-01_2024-07-11.csv.gz"


def test_migrate_concurrently_is_idempotent(store: Settings) -> None:
    with ThreadPoolExecutor(4) as pool:
        revisions = list(pool.map(lambda _: db.migrate(store), range(4)))
    assert len(set(revisions)) == 1
    assert revisions[0]
    with db.connect(store, autocommit=True) as conn:
        row = conn.execute(
            "SELECT to_regclass('market.ticks'), to_regclass('market.bars'), "
            "(SELECT count(*) FROM pg_namespace WHERE nspname IN ('market', 'features', 'trading'))"
        ).fetchone()
    assert row is not None
    assert row[0]
    assert row[1]
    assert row[2] == 3


def test_backend_matches_the_server(store: Settings) -> None:
    backend = db.backend(store)
    with db.connect(store, autocommit=True) as conn:
        if store.timescale:
            assert backend.timescale
            assert backend.license in ("apache", "timescale")
            hyper = conn.execute(
                "SELECT count(*) FROM timescaledb_information.hypertables WHERE hypertable_schema = 'market'"
            ).fetchone()
            assert hyper is not None
            assert hyper[0] == 2
        else:
            assert not backend.timescale
            kind = conn.execute(
                "SELECT relkind FROM pg_class WHERE oid = 'market.ticks'::regclass"
            ).fetchone()
            assert kind is not None
            assert kind[0] == "p"


def test_data_load_twice_writes_each_kline_once(
    store: Settings, data_dir: Path, cleanup_symbols: list[str]
) -> None:
    sym = unique_symbol("BTCUSDT")
    cleanup_symbols.append(sym)
    path = data_dir / KLINES
    cmd = [sys.executable, "-m", "hft.cli", "data", "load", "--data", str(path), "--symbol", sym]
    t0 = time.monotonic()
    first = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - t0
    assert first.returncode == 0, first.stdout + first.stderr
    second = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stdout + second.stderr
    assert elapsed < 60
    src = read_ohlcv_csv(path)
    with db.connect(store, autocommit=True) as conn:
        got = bars.read_bars(conn, sym, "15m")
    assert len(got) == len(src) == 18_472
    assert (got.index == src.index).all()
    assert (got["source"] == "kline").all()
    pd.testing.assert_series_equal(got["close"], src["close"], check_names=False)
    pd.testing.assert_series_equal(got["buy_volume"], src["taker_buy_volume"], check_names=False)
    assert (got["trade_count"].astype("int64") == src["count"].astype("int64")).all()
    assert ((got["vwap"] - src["quote_volume"] / src["volume"]).abs() < 1e-6).all()
    assert (got["close_time"] - got.index == pd.Timedelta(minutes=15)).all()


def test_tick_bars_never_overwrite_kline_bars(store: Settings, cleanup_symbols: list[str]) -> None:
    sym = unique_symbol("BTCUSDT")
    cleanup_symbols.append(sym)
    open_time = pd.Timestamp("2024-08-09 00:00", tz="UTC")
    kline = pd.DataFrame(
        {"open": [100.0], "high": [110.0], "low": [90.0], "close": [105.0], "volume": [7.0]},
        index=pd.DatetimeIndex([open_time], name="open_time"),
    )
    with db.connect(store) as conn:
        bars.upsert_klines(conn, kline, sym, "15m")
    base = int(open_time.timestamp()) * 10**9
    ticks = [
        Tick(
            symbol=sym,
            trade_id=i,
            price=200.0 + i,
            quantity=1.0,
            trade_time_ns=base + i * 10**9,
            event_time_ns=base + i * 10**9,
            receive_time_ns=base + i * 10**9 + 5,
            venue="test",
        )
        for i in range(1, 4)
    ]
    writer = TickWriter(store)
    try:
        result = writer.write(ticks)
    finally:
        writer.close()
    assert result.inserted == 3
    with db.connect(store, autocommit=True) as conn:
        b15 = bars.read_bars(conn, sym, "15m")
        b1 = bars.read_bars(conn, sym, "1m")
    assert b15["source"].tolist() == ["kline"]
    assert b15["close"].tolist() == [105.0]
    assert b1["source"].tolist() == ["ticks"]
    assert b1["close"].tolist() == [203.0]
    assert b1["open"].tolist() == [201.0]
