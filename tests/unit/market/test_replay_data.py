"""Reading the recorded captures and archive trade files the replay exchange serves."""

from __future__ import annotations

import gzip
import zipfile
from pathlib import Path

from hft.market.binance import parse_event
from hft.market.replay import (
    Timeline,
    default_capture_paths,
    expected_trades,
    load_capture_trades,
    load_source,
    read_capture,
    read_trade_file,
)

SYMBOLS = ["BTCUSDT", "ETHUSDT"]


def test_default_spot_captures_hold_every_trade_with_contiguous_ids(
    data_dir: Path, spot_timeline: Timeline
) -> None:
    paths = default_capture_paths(data_dir, SYMBOLS)
    assert len(paths) == 4
    assert [str(p) for p in paths] == spot_timeline.sources
    trades = spot_timeline.trades
    by_symbol: dict[str, list[int]] = {}
    for t in trades:
        by_symbol.setdefault(t.symbol, []).append(t.trade_id)
    # PROVENANCE.md: 19,904 BTCUSDT trades 3735683259 → 3735703162, 14,515 ETHUSDT 1520538925 → 1520553439
    assert len(by_symbol["BTCUSDT"]) == 19904
    assert len(by_symbol["ETHUSDT"]) == 14515
    assert by_symbol["BTCUSDT"] == list(range(3735683259, 3735703163))
    assert by_symbol["ETHUSDT"] == list(range(1520538925, 1520553440))
    # one file alone: hftbacktest_spot_ethusdt_20240808 holds 6,106 trades from 1520538925
    assert [t.trade_id for t in load_capture_trades([paths[2]])] == list(range(1520538925, 1520538925 + 6106))


def test_captures_interleave_symbols_by_receive_time(data_dir: Path, spot_timeline: Timeline) -> None:
    timeline = spot_timeline
    times = [f.time_ns for f in timeline.frames]
    assert times == sorted(times)
    first_syms = {f.trade.symbol for f in timeline.frames[:2000] if f.trade}
    assert first_syms == set(SYMBOLS)
    # the same trades as the derived archive file (PROVENANCE: trades/ derived from these captures)
    archive = read_trade_file(
        data_dir / "trades" / "spot_BTCUSDT_trades_2024-08-08T2354Z_2024-08-09T0005Z.csv.gz", "BTCUSDT"
    )
    replayed = [t for t in timeline.trades if t.symbol == "BTCUSDT"]
    assert [(t.trade_id, t.price, t.quantity, t.trade_time_ms, t.buyer_is_maker) for t in archive] == [
        (t.trade_id, t.price, t.quantity, t.trade_time_ms, t.buyer_is_maker) for t in replayed
    ]


def test_microsecond_capture_timestamps_are_detected(data_dir: Path) -> None:
    path = data_dir / "ws_capture" / "hftbacktest_spot_btcusdt_20230405.txt.gz"
    frame = next(f for f in read_capture(path) if f.trade is not None)
    assert frame.time_ns == 1680652800004107 * 1000  # the file's µs local timestamp
    assert frame.trade.trade_time_ms == 1680652799999
    assert isinstance(parse_event(frame.data), type(frame.trade))


def test_trade_files_in_ms_and_us_read_alike(tmp_path: Path) -> None:
    rows_ms = "1,100.5,0.1,10.05,1704067200123,True,True\n2,100.6,0.2,20.12,1704067200456,False,True\n"
    rows_us = "1,100.5,0.1,10.05,1704067200123000,True,True\n2,100.6,0.2,20.12,1704067200456000,False,True\n"
    (tmp_path / "ms.csv").write_text(rows_ms)
    with zipfile.ZipFile(tmp_path / "us.zip", "w") as zf:
        zf.writestr("BTCUSDT-trades-2025-01-01.csv", rows_us)
    with gzip.open(tmp_path / "hdr.csv.gz", "wt") as fh:
        fh.write("id,price,qty,quote_qty,time,is_buyer_maker,is_best_match\n" + rows_ms)
    a = read_trade_file(tmp_path / "ms.csv", "BTCUSDT")
    assert (
        a
        == read_trade_file(tmp_path / "us.zip", "BTCUSDT")
        == read_trade_file(tmp_path / "hdr.csv.gz", "BTCUSDT")
    )
    assert [t.trade_time_ms for t in a] == [1704067200123, 1704067200456]
    assert [t.buyer_is_maker for t in a] == [True, False]


def test_trade_files_become_a_timeline_paced_by_trade_time(tmp_path: Path) -> None:
    (tmp_path / "BTCUSDT-trades.csv").write_text(
        "1,100.5,0.1,10.05,1704067200123,True,True\n2,100.6,0.2,20.12,1704067201456,False,True\n"
    )
    (tmp_path / "ETHUSDT-trades.csv").write_text("7,2.5,1,2.5,1704067200500,True,True\n")
    tl = load_source(tmp_path, SYMBOLS)
    assert [(f.trade.symbol, f.trade.trade_id) for f in tl.frames if f.trade] == [
        ("BTCUSDT", 1),
        ("ETHUSDT", 7),
        ("BTCUSDT", 2),
    ]
    assert tl.frames[0].stream == "btcusdt@trade"


def test_loop_passes_shift_ids_contiguously_and_times_forward(tmp_path: Path) -> None:
    (tmp_path / "BTCUSDT-trades.csv").write_text(
        "10,1,1,1,1704067200000,True,True\n11,1,1,1,1704067205000,True,True\n"
    )
    tl = load_source(tmp_path, ["BTCUSDT"])
    three = expected_trades(tl, passes=3)
    assert [t.trade_id for t in three] == [10, 11, 12, 13, 14, 15]
    times = [t.trade_time_ms for t in three]
    assert times == sorted(times)
    assert times[2] - times[0] == 6000
