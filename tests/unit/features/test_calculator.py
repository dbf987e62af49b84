"""The calculator's logic without services: warm-up + streamed trades equal the batch over the same bars."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hft.features import FEATURE_SPEC_FULL, bars_from_trades, compute_features
from hft.features.calculator import FeatureCalculator, SymbolFeatures, commit_offsets
from hft.features.spec import FEATURE_SPEC_OHLCV_V2, FeatureSpec
from hft.schema.market_pb2 import Tick
from tests.unit.features.conftest import KLINES, load_klines, read_trades

MIN = 60_000_000_000
TRADES = "trades/spot_ETHUSDT_trades_2024-08-08T2354Z_2024-08-09T0005Z.csv.gz"


def _history(data_dir: Path, first_open_ns: int, n: int = 700) -> pd.DataFrame:
    """Real ETHUSDT 1m klines re-stamped to end right before the stream's first bar."""
    kl = load_klines(data_dir, KLINES[("ETHUSDT", "1m")]).iloc[:n]
    idx = pd.to_datetime([first_open_ns - (n - k) * MIN for k in range(n)], unit="ns", utc=True)
    return kl.set_axis(pd.DatetimeIndex(idx, name="open_time"))


@pytest.mark.parametrize("spec", [FEATURE_SPEC_FULL, FEATURE_SPEC_OHLCV_V2], ids=lambda s: s.version)
def test_warm_up_then_stream_equals_batch_over_history_plus_streamed_bars(
    data_dir: Path, spec: FeatureSpec
) -> None:
    trades = read_trades(data_dir / TRADES)
    first_open = int(trades["trade_time_ns"].iloc[0]) // MIN * MIN
    history = _history(data_dir, first_open, n=max(700, spec.warmup_bars + 100))
    calc = FeatureCalculator(
        "1m", spec, loader=lambda sym, iv, before, n: history[history.index < before].iloc[-n:]
    )
    closed = []
    for tid, t, p, q, m in trades[
        ["trade_id", "trade_time_ns", "price", "quantity", "buyer_is_maker"]
    ].itertuples(index=False):
        out = calc.on_tick(
            Tick(
                symbol="ETHUSDT",
                trade_id=int(tid),
                price=float(p),
                quantity=float(q),
                buyer_is_maker=bool(m),
                trade_time_ns=int(t),
                receive_time_ns=int(t) + 5_000_000,
            )
        )
        assert out is not None
        closed += out
    assert calc.symbols["ETHUSDT"].warmed_bars == spec.warmup_bars
    streamed_bars = bars_from_trades(trades, "1m").iloc[:-1]  # the last bar is still open
    assert len(closed) == len(streamed_bars) >= 10
    batch = compute_features(pd.concat([history, streamed_bars]), spec).iloc[-len(closed) :]
    stream = np.array([[c.features[n] for n in spec.names] for c in closed if c.features])
    np.testing.assert_allclose(stream, batch.to_numpy(), rtol=0, atol=1e-9, equal_nan=True)
    assert [c.feature_time for c in closed] == list(streamed_bars.index + pd.Timedelta(minutes=1))
    # the clock closes the last bar on the exchange's time line (receive time is 5 ms later)
    last_trade = int(trades["trade_time_ns"].iloc[-1])
    late_clock = last_trade - 5_000_000 + (60 - (last_trade // 10**9) % 60) * 10**9 + 2 * 10**9
    assert calc.on_clock(late_clock - 10**9) == []
    last = calc.on_clock(late_clock)
    assert [c.bar.trade_count > 0 for c in last] == [True]
    # a quiet minute later the clock emits an empty bar, as Binance's klines do
    empty = calc.on_clock(late_clock + MIN)
    assert [c.bar.volume for c in empty] == [0.0]
    assert empty[0].bar.close == last[0].bar.close


def test_a_hole_between_history_and_stream_is_not_filled_with_empty_bars(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sf = SymbolFeatures("ETHUSDT", "1m", FEATURE_SPEC_FULL, 0)
    first_open = 1_700_000_000 * 10**9 // MIN * MIN
    sf.warm(_history(data_dir, first_open - 30 * MIN), first_open)
    assert "a hole of 30 bars" in caplog.text
    assert sf.builder.last_closed_open_ns is None  # not seeded: the first streamed bar follows the history
    assert sf.on_trade(first_open + 1, 100.0, 1.0, False, 0) == []


def test_offsets_commit_at_the_first_tick_of_the_oldest_open_bar() -> None:
    assert commit_offsets({"p0": 120, "p1": 50}, {"p0": [100, 110], "p1": []}) == {"p0": 100, "p1": 50}
    assert commit_offsets({"p0": 120}, {}) == {"p0": 120}
