"""Replay → tick ingestor → market.ticks and bars, on the real database and broker."""

from __future__ import annotations

import signal
import threading
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from hft.config import Settings
from hft.storage import bars, db
from hft.storage.bars import read_bars

from .conftest import (
    count_rows,
    group_caught_up,
    produce,
    stored_ids,
    ticks_from_file,
    unique_symbol,
    wait_until,
)

pytestmark = pytest.mark.integration


def pandas_bars(ticks: list[Any], interval: str) -> pd.DataFrame:
    """Bars of one symbol from the replayed ticks with a plain pandas resample (the reference)."""
    df = (
        pd.DataFrame(
            {
                "trade_id": [t.trade_id for t in ticks],
                "price": [t.price for t in ticks],
                "quantity": [t.quantity for t in ticks],
                "maker": [t.buyer_is_maker for t in ticks],
                "time": pd.to_datetime([t.trade_time_ns for t in ticks], unit="ns", utc=True),
            }
        )
        .sort_values("trade_id")
        .set_index("time")
    )
    df["notional"] = df["price"] * df["quantity"]
    df["buy"] = df["quantity"].where(~df["maker"], 0.0)
    g = df.resample(bars.interval_delta(interval), origin="epoch", label="left", closed="left")
    out = pd.DataFrame(
        {
            "open": g["price"].first(),
            "high": g["price"].max(),
            "low": g["price"].min(),
            "close": g["price"].last(),
            "volume": g["quantity"].sum(),
            "trade_count": g["price"].count(),
            "buy_volume": g["buy"].sum(),
            "quote_volume": g["notional"].sum(),
        }
    )
    out = out[out["trade_count"] > 0]
    out["vwap"] = out["quote_volume"] / out["volume"]
    return out


def test_ingest_replay_stores_every_trade_once_and_twice_still_once(
    store: Settings, data_dir: Path, ingestor: Any, cleanup_symbols: list[str]
) -> None:
    btc, eth = unique_symbol("BTCUSDT"), unique_symbol("ETHUSDT")
    cleanup_symbols += [btc, eth]
    ticks = {btc: ticks_from_file(data_dir, "BTC", btc), eth: ticks_from_file(data_dir, "ETH", eth)}
    n = sum(len(v) for v in ticks.values())
    produce(store, ticks[btc] + ticks[eth])
    proc = ingestor("--no-metrics")
    wait_until(lambda: count_rows(store, [btc, eth])[0] >= n, f"{n} ticks in market.ticks")
    for sym, ts in ticks.items():
        assert stored_ids(store, sym) == sorted(t.trade_id for t in ts)

    # the same replay again: every message is consumed and committed, no row is added
    produce(store, ticks[btc] + ticks[eth])
    wait_until(group_caught_up(store), "the ingestor group to commit the second replay")
    assert count_rows(store, [btc, eth]) == (n, n)
    assert proc.stop() == 0  # SIGTERM: a clean exit

    # bars built from the replayed ticks equal an independent pandas resample of the same ticks
    with db.connect(store, autocommit=True) as conn:
        for sym, ts in ticks.items():
            for interval in bars.TICK_INTERVALS:
                got = read_bars(conn, sym, interval)
                want = pandas_bars(ts, interval)
                assert list(got.index) == list(want.index), (sym, interval)
                assert (got["source"] == "ticks").all()
                assert (got["close_time"] - got.index == bars.interval_delta(interval)).all()
                for col in ["open", "high", "low", "close", "volume", "buy_volume", "quote_volume", "vwap"]:
                    np.testing.assert_allclose(
                        got[col].to_numpy(float),
                        want[col].to_numpy(float),
                        rtol=1e-9,
                        err_msg=f"{sym} {interval} {col}",
                    )
                assert got["trade_count"].tolist() == want["trade_count"].tolist()


@pytest.mark.faults
def test_ingestor_killed_midstream_restarts_and_stores_every_trade_once(
    store: Settings, data_dir: Path, ingestor: Any, cleanup_symbols: list[str]
) -> None:
    syms = [unique_symbol(s) for s in ("BTCUSDT", "ETHUSDT")]
    cleanup_symbols += syms
    ticks = {s: ticks_from_file(data_dir, key, s) for s, key in zip(syms, ["BTC", "ETH"], strict=True)}
    n = sum(len(v) for v in ticks.values())
    produce(store, [t for ts in ticks.values() for t in ts])
    # small batches: many commits, so the kill lands between a DB commit and an offset commit sometimes
    first = ingestor("--no-metrics", "--batch-max", "300")
    wait_until(lambda: count_rows(store, syms)[0] > 2000, "the first ticks")
    first.kill(signal.SIGKILL)
    at_kill = count_rows(store, syms)[0]
    assert 0 < at_kill < n, "the kill must land mid-stream"
    ingestor("--no-metrics")
    wait_until(lambda: count_rows(store, syms)[0] >= n, f"all {n} ticks after the restart", timeout=120)
    wait_until(group_caught_up(store), "the restarted ingestor to commit")
    assert count_rows(store, syms) == (n, n)
    for sym, ts in ticks.items():
        assert stored_ids(store, sym) == sorted(t.trade_id for t in ts)


@pytest.mark.faults
def test_postgres_restart_midstream_ends_with_every_trade_once(
    stack: Any, store: Settings, data_dir: Path, ingestor: Any, cleanup_symbols: list[str]
) -> None:
    sym = unique_symbol("BTCUSDT")
    cleanup_symbols.append(sym)
    ticks = ticks_from_file(data_dir, "UBTC", sym)
    proc = ingestor("--metrics-port", str(store.port("metrics_tick_ingestor") + 1000), "--batch-max", "500")
    sender = threading.Thread(target=produce, args=(store, ticks), kwargs={"chunk": 1000, "pause_s": 0.25})
    sender.start()
    wait_until(lambda: count_rows(store, [sym])[0] > 1000, "the first ticks")
    stack.postgres.stop()
    stopped_at = count_rows_or_none(store, [sym])
    assert stopped_at is None  # the server really is down
    stack.postgres.start()
    sender.join(timeout=120)
    wait_until(
        lambda: count_rows(store, [sym])[0] >= len(ticks),
        f"all {len(ticks)} ticks after the restart",
        timeout=120,
    )
    wait_until(group_caught_up(store), "the ingestor to commit")
    assert count_rows(store, [sym]) == (len(ticks), len(ticks))
    assert stored_ids(store, sym) == sorted(t.trade_id for t in ticks)
    # the outage was seen and retried, and the metrics say so
    port = store.port("metrics_tick_ingestor") + 1000
    body = urllib.request.urlopen(f"http://{store.bind_host}:{port}/metrics", timeout=5).read().decode()
    retries = [line for line in body.splitlines() if line.startswith("tick_ingestor_retries_total ")]
    assert retries
    assert float(retries[0].split()[1]) >= 1
    assert "tick_ingestor_write_latency_seconds_bucket" in body
    assert "tick_ingestor_consumer_lag" in body
    assert proc.stop() == 0


def count_rows_or_none(settings: Settings, symbols: list[str]) -> tuple[int, int] | None:
    """count_rows, or None when the database does not answer."""
    from hft.config import TransientError

    try:
        return count_rows(settings, symbols)
    except TransientError:
        return None
