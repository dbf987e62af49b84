"""Bars from trades: the incremental builder and its batch twin agree on real Binance trades."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from hft.features import Bar, BarBuilder, bars_from_trades
from hft.features.bars import BAR_COLUMNS, bars_to_frame, interval_ns
from tests.unit.features.conftest import read_trades

TRADE_FILES = [
    "spot_BTCUSDT_trades_2024-08-08T2354Z_2024-08-09T0005Z.csv.gz",
    "spot_ETHUSDT_trades_2024-08-08T2354Z_2024-08-09T0005Z.csv.gz",
    "spot_BTCUSDT_trades_2023-04-05T0000Z.csv.gz",
]
S = 1_000_000_000


def _stream(trades: pd.DataFrame, interval: str) -> list[Bar]:
    builder = BarBuilder("X", interval)
    closed: list[Bar] = []
    for t, p, q, m in trades[["trade_time_ns", "price", "quantity", "buyer_is_maker"]].itertuples(
        index=False
    ):
        out = builder.add(int(t), float(p), float(q), bool(m))
        assert out is not None
        closed += out
    assert builder.partial is not None
    closed += builder.on_clock(builder.partial.close_time_ns + builder.grace_ns)
    return closed


@pytest.mark.parametrize("interval", ["1m", "10s"])
@pytest.mark.parametrize("name", TRADE_FILES)
def test_builder_equals_batch_bars_on_real_trades(data_dir: Path, name: str, interval: str) -> None:
    trades = read_trades(data_dir / "trades" / name)
    stream = bars_to_frame(_stream(trades, interval))
    batch = bars_from_trades(trades, interval)
    assert len(stream) == len(batch) > 3
    pd.testing.assert_frame_equal(stream[list(BAR_COLUMNS)], batch, check_exact=False, rtol=1e-12, atol=1e-9)
    assert stream["trade_count"].sum() == len(trades)
    assert (stream["buy_volume"] <= stream["volume"] + 1e-12).all()


def test_bars_from_trades_match_binance_kline_open_of_the_same_minute(data_dir: Path) -> None:
    # PROVENANCE: the first trade at/after 2024-08-09 00:00 equals the 15m candle open (61686.00)
    trades = read_trades(data_dir / "trades" / TRADE_FILES[0])
    bars = bars_from_trades(trades, "15m")
    assert bars.loc[pd.Timestamp("2024-08-09 00:00", tz="UTC"), "open"] == 61686.00


def test_trade_of_a_later_bucket_closes_the_bar_and_fills_empty_buckets() -> None:
    b = BarBuilder("BTCUSDT", "1m")
    t0 = 1_700_000_040 * S  # a minute boundary
    assert b.add(t0 + 1 * S, 100.0, 1.0, False) == []
    assert b.add(t0 + 2 * S, 102.0, 2.0, True) == []
    assert b.add(t0 + 3 * S, 99.0, 1.0, False) == []
    closed = b.add(t0 + 3 * 60 * S, 101.0, 1.0, False)  # two minutes later
    assert closed is not None
    assert len(closed) == 3
    first, empty, _ = closed[0], closed[1], closed[2]
    assert (first.open, first.high, first.low, first.close) == (100.0, 102.0, 99.0, 99.0)
    assert first.volume == 4.0
    assert first.buy_volume == 2.0
    assert first.trade_count == 3
    assert first.vwap == pytest.approx((100 + 204 + 99) / 4)
    assert first.open_time_ns == t0
    assert first.close_time_ns == t0 + interval_ns("1m")
    assert empty.volume == 0
    assert empty.open == empty.close == 99.0
    assert empty.vwap == 99.0


def test_clock_closes_a_bar_after_grace_and_late_trades_are_counted_not_folded() -> None:
    b = BarBuilder("BTCUSDT", "1m", grace_ns=2 * S)
    t0 = 1_700_000_040 * S
    b.add(t0 + 5 * S, 100.0, 1.0, False)
    assert b.on_clock(t0 + 61 * S) == []  # within grace
    closed = b.on_clock(t0 + 62 * S)
    assert [c.open_time_ns for c in closed] == [t0]
    assert b.add(t0 + 59 * S, 100.5, 1.0, False) is None  # its bar is already out
    assert b.late_trades == 1
    # no trades for three more minutes: the clock emits the empty bars
    assert [c.volume for c in b.on_clock(t0 + 4 * 60 * S + 2 * S)] == [0.0, 0.0, 0.0]
