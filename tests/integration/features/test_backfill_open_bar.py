"""A bar still open in market.bars (built from ticks, no later trade yet) never gets a feature row."""

from __future__ import annotations

import pandas as pd
import pytest

from hft.config import Settings

pytestmark = pytest.mark.integration


def _trade(symbol: str, trade_id: int, when: pd.Timestamp, price: float) -> dict[str, object]:
    ms = int(when.timestamp() * 1000)
    return {
        "e": "trade",
        "E": ms,
        "s": symbol,
        "t": trade_id,
        "p": f"{price:.2f}",
        "q": "0.01000",
        "T": ms,
        "m": trade_id % 2 == 0,
    }


def test_backfill_writes_closed_tick_bars_and_skips_the_open_one(
    feature_settings: Settings, loaded_bars: dict[str, pd.DataFrame]
) -> None:
    from hft.features.backfill import backfill
    from hft.market.ticks import tick_from_trade
    from hft.storage import db
    from hft.storage.ticks import TickWriter

    bars = loaded_bars["FTBTC"]
    closed_open_time = bars.index[-1] + pd.Timedelta(minutes=15)  # first bar after the klines
    still_open_time = closed_open_time + pd.Timedelta(minutes=15)
    price = float(bars["close"].iloc[-1])
    ticks = [
        tick_from_trade(
            _trade("FTBTC", 10 + i, closed_open_time + pd.Timedelta(seconds=30 * i), price + i), 0
        )
        for i in range(20)
    ]
    # the newest trade lies inside the next bucket: that bar is open, the one before is closed
    ticks.append(tick_from_trade(_trade("FTBTC", 100, still_open_time + pd.Timedelta(seconds=5), price), 0))
    writer = TickWriter(feature_settings)
    try:
        writer.write(ticks)
    finally:
        writer.close()

    start = bars.index[-3].to_pydatetime()
    end = (still_open_time + pd.Timedelta(minutes=15)).to_pydatetime()
    backfill(feature_settings, "FTBTC", "15m", start, end, materialize=False)
    with db.connect(feature_settings) as conn:
        stamps = {
            pd.Timestamp(r[0])
            for r in conn.execute(
                "SELECT event_timestamp FROM features.bar_features WHERE symbol = 'FTBTC' AND event_timestamp > %s",
                (bars.index[-1].to_pydatetime(),),
            )
        }
    assert closed_open_time + pd.Timedelta(minutes=15) in stamps, "the closed tick bar has its feature row"
    assert still_open_time + pd.Timedelta(minutes=15) not in stamps, "the open bar must not get a feature row"
