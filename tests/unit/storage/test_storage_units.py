"""Unit tests of the storage helpers that need no database."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from hft.schema.market_pb2 import Tick
from hft.storage import bars
from hft.storage.history import interval_from_name
from hft.storage.ticks import _months_between, _ns_to_dt, decode_batch


def test_bucket_start_aligns_to_interval_boundaries() -> None:
    ts = datetime(2024, 8, 8, 23, 59, 59, 999_999, tzinfo=UTC)
    assert bars.bucket_start(ts, "1m") == datetime(2024, 8, 8, 23, 59, tzinfo=UTC)
    assert bars.bucket_start(ts, "15m") == datetime(2024, 8, 8, 23, 45, tzinfo=UTC)
    exact = datetime(2024, 8, 9, 0, 0, tzinfo=UTC)
    assert bars.bucket_start(exact, "15m") == exact


def test_touched_ranges_cover_first_and_last_bucket() -> None:
    first = datetime(2024, 8, 8, 23, 58, 10, tzinfo=UTC)
    last = datetime(2024, 8, 9, 0, 1, 5, tzinfo=UTC)
    ranges = {(r.symbol, r.interval): r for r in bars.touched_ranges({"BTCUSDT": (first, last)})}
    assert ranges["BTCUSDT", "1m"].lo == datetime(2024, 8, 8, 23, 58, tzinfo=UTC)
    assert ranges["BTCUSDT", "1m"].hi == datetime(2024, 8, 9, 0, 2, tzinfo=UTC)
    assert ranges["BTCUSDT", "15m"].lo == datetime(2024, 8, 8, 23, 45, tzinfo=UTC)
    assert ranges["BTCUSDT", "15m"].hi == datetime(2024, 8, 9, 0, 15, tzinfo=UTC)


def test_ns_to_datetime_is_exact_at_bucket_edges() -> None:
    ns = int(datetime(2024, 8, 9, tzinfo=UTC).timestamp()) * 10**9
    assert _ns_to_dt(ns) == datetime(2024, 8, 9, tzinfo=UTC)
    assert _ns_to_dt(ns - 1000) == datetime(2024, 8, 8, 23, 59, 59, 999_999, tzinfo=UTC)


def test_months_between_crosses_year_end() -> None:
    a = int(datetime(2024, 12, 31, 23, tzinfo=UTC).timestamp()) * 10**9
    b = int(datetime(2025, 2, 1, tzinfo=UTC).timestamp()) * 10**9
    assert _months_between(a, b) == [
        datetime(2024, 12, 1, tzinfo=UTC),
        datetime(2025, 1, 1, tzinfo=UTC),
        datetime(2025, 2, 1, tzinfo=UTC),
    ]


def test_decode_batch_dead_letters_garbage_and_invalid_ticks() -> None:
    good = Tick(
        symbol="BTCUSDT", trade_id=1, price=1.0, quantity=2.0, trade_time_ns=10**18
    ).SerializeToString()
    no_time = Tick(symbol="BTCUSDT", trade_id=2, price=1.0, quantity=2.0).SerializeToString()
    ticks, bad = decode_batch([good, b"\xff\xff\xff", None, no_time])
    assert [t.trade_id for t in ticks] == [1]
    reasons = [r for _, r in bad]
    assert len(reasons) == 3
    assert any("not a Tick" in r for r in reasons)
    assert any("empty" in r for r in reasons)
    assert any("without trade time" in r for r in reasons)


def test_interval_from_file_names() -> None:
    assert interval_from_name("BTCUSDT_15m_ohlcv_2023-01-01_2025-08-31.csv.gz") == "15m"
    assert interval_from_name("BTCUSDT-1m-2024-01.zip") == "1m"
    assert interval_from_name("prices.csv") is None


def test_infer_interval_from_spacing() -> None:
    idx = pd.date_range("2024-01-01", periods=10, freq="15min", tz="UTC")
    assert bars.infer_interval(idx) == "15m"
    with pytest.raises(ValueError, match="matches no interval"):
        bars.infer_interval(pd.date_range("2024-01-01", periods=5, freq="7min", tz="UTC"))


def test_read_klines_from_a_binance_archive_zip_over_file_url(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import zipfile

    from hft.storage.history import read_klines

    # data.binance.vision kline layout: no header, 12 columns; 2025 files carry µs open times
    rows = [
        "1735689600000000,93576.00,93610.93,93537.50,93610.93,8.21827000,1735689659999999,769094.39,1507,"
        "3.61,337868.57,0",
        "1735689660000000,93610.93,93652.00,93606.15,93642.01,10.35,1735689719999999,969131.15,1681,5.1,"
        "477532.98,0",
    ]
    path = tmp_path / "BTCUSDT-1m-2025-01.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("BTCUSDT-1m-2025-01.csv", "\n".join(rows) + "\n")
    [kf] = list(read_klines(path.as_uri()))
    assert (kf.symbol, kf.interval, len(kf.frame)) == ("BTCUSDT", "1m", 2)
    assert kf.frame.index[0] == pd.Timestamp("2025-01-01 00:00", tz="UTC")
    assert kf.frame["count"].tolist() == [1507, 1681]
