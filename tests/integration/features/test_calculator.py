"""The feature calculator on a replay of real trades: stream == batch over market.bars, online == offline.

Real Binance spot trades (BTCUSDT and ETHUSDT, 2024-08-08 23:54 -> 00:05) go through the real
broker to the calculator; the tick ingestor's writer stores the same ticks and their bars. The
trades are shifted in time (prices untouched) to follow directly on real 1m klines of
2025-06 that serve as the stored history (the shared data holds no 1m klines of 2024-08).
"""

from __future__ import annotations

import math
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hft.config import Settings
from hft.features import FEATURE_SPEC_FULL, compute_features
from hft.market.ohlcv import read_ohlcv_csv
from tests.integration.features.conftest import clear_symbols
from tests.unit.features.conftest import read_trades

pytestmark = pytest.mark.integration

T0 = pd.Timestamp("2025-06-01 00:00", tz="UTC")  # open time of the first streamed bar
PAIRS = {"FTBTC": ("klines_1m/BTCUSDT_1m_ohlcv_2025-05-20_2025-08-18.csv.gz",
                   "trades/spot_BTCUSDT_trades_2024-08-08T2354Z_2024-08-09T0005Z.csv.gz"),
         "FTETH": ("klines_1m/ETHUSDT_1m_ohlcv_2025-05-20_2025-08-18.csv.gz",
                   "trades/spot_ETHUSDT_trades_2024-08-08T2354Z_2024-08-09T0005Z.csv.gz")}
HISTORY = 700  # stored 1m bars before T0 (warm-up needs 524)


def _ticks(data_dir: Path, symbol: str, trades_rel: str, received: int) -> list[object]:
    from hft.schema.market_pb2 import Tick

    tr = read_trades(data_dir / trades_rel)
    first = int(tr["trade_time_ns"].iloc[0])
    shift = T0.value - (first - first % 60_000_000_000)
    now = received
    return [Tick(symbol=symbol, trade_id=int(i), price=float(p), quantity=float(q), buyer_is_maker=bool(m),
                 trade_time_ns=int(t) + shift, event_time_ns=int(t) + shift, receive_time_ns=now,
                 source=Tick.SOURCE_STREAM, venue="replay")
            for i, t, p, q, m in tr[["trade_id", "trade_time_ns", "price", "quantity", "buyer_is_maker"]]
            .itertuples(index=False)]


@pytest.fixture
def replay_settings(feature_settings: Settings) -> Settings:
    """The test stack with 1m bars and a topic of its own (other tests share the broker)."""
    return feature_settings.model_copy(update={"bar_interval": "1m", "topic_ticks": f"ft_ticks_{uuid.uuid4().hex[:8]}"})


def test_replay_through_the_calculator_matches_batch_features_of_market_bars(
        replay_settings: Settings, data_dir: Path) -> None:
    import redis

    from hft.features.calculator import CLOSED_STREAM, read_partial
    from hft.features.offline import read_features
    from hft.features.online import OnlineFeatures
    from hft.features.store import apply
    from hft.market.kafka_sink import make_producer
    from hft.storage import db
    from hft.storage.bars import read_bars, upsert_klines
    from hft.storage.ticks import TickWriter
    from streamers.feature_calculator import Calculator

    s = replay_settings
    t_start = time.monotonic()
    clear_symbols(s)
    apply(s)
    print(f"apply {time.monotonic() - t_start:.1f}s")
    ticks: dict[str, list[object]] = {}
    received = time.time_ns()  # the receive time stamped on every replayed tick
    with db.connect(s) as conn:
        for sym, (kl, tr) in PAIRS.items():
            hist = read_ohlcv_csv(data_dir / kl)
            upsert_klines(conn, hist[hist.index < T0].iloc[-HISTORY:], sym, "1m")
            ticks[sym] = _ticks(data_dir, sym, tr, received)
    writer = TickWriter(s, intervals=("1m",))
    producer = make_producer(s)
    for sym, ts in ticks.items():
        writer.write(ts)  # what the tick ingestor does with the same messages
        for t in ts:
            producer.send(s.topic_ticks, key=sym.encode(), value=t.SerializeToString())  # type: ignore[attr-defined]
    producer.flush()
    producer.close()
    writer.close()
    total = sum(len(v) for v in ticks.values())
    print(f"produced {time.monotonic() - t_start:.1f}s")

    calc = Calculator(s)
    try:
        seen, deadline = 0, time.monotonic() + 60
        t0 = time.monotonic()
        while seen < total and time.monotonic() < deadline:
            seen += calc.run_once(timeout_ms=500)
        print(f"consumed {seen} ticks in {time.monotonic() - t0:.1f}s")
        assert seen == total
        calc.run_once(timeout_ms=50)  # caught up: an idle poll writes the partial bars held back (<= 100 ms)
        partial = read_partial(redis.Redis.from_url(s.redis_dsn), "FTBTC")
        assert partial is not None
        assert partial["close"] == ticks["FTBTC"][-1].price  # type: ignore[attr-defined]
        # the market goes quiet: at 00:12:05 exchange time the clock closes the last bar (00:11)
        last_trade = max(t.trade_time_ns for t in ticks["FTBTC"])  # type: ignore[attr-defined]
        calc.clock = lambda: received + (T0 + pd.Timedelta(minutes=12, seconds=5)).value - last_trade
        while calc.run_once(timeout_ms=10):
            pass
        calc.run_once(timeout_ms=10)
    finally:
        calc.stop.set()
        calc.consumer.close()
        calc.sink.close()

    online = OnlineFeatures(s, FEATURE_SPEC_FULL)
    names = list(FEATURE_SPEC_FULL.names)
    with db.connect(s) as conn:
        for sym in PAIRS:
            bars = read_bars(conn, sym, "1m")
            streamed = read_features(conn, sym, "1m", start=T0.to_pydatetime())
            bars = bars.assign(vwap=bars["vwap"].astype("float64"))
            batch = compute_features(bars.drop(columns=["close_time", "source"]).astype("float64"), FEATURE_SPEC_FULL)
            assert len(streamed) == (bars.index >= T0).sum() >= 10
            # every streamed bar equals the batch over market.bars (NaN where both are absent)
            for n in names:
                np.testing.assert_allclose(streamed[n].to_numpy(), batch.loc[streamed.index, n].to_numpy(),
                                           rtol=0, atol=1e-9, equal_nan=True, err_msg=f"{sym} {n}")
            got = online.latest(sym)
            assert got is not None
            feature_time, values = got
            assert feature_time == bars.index[-1] + pd.Timedelta(minutes=1)
            last = batch.iloc[-1]
            for n in names:
                assert (math.isnan(values[n]) and math.isnan(last[n])) or abs(values[n] - last[n]) <= 1e-9, n
            sdk = online.latest_sdk(sym)
            assert sdk["macd_hist"] == pytest.approx(last["macd_hist"], abs=1e-12)
    entries = redis.Redis.from_url(s.redis_dsn).xrevrange(CLOSED_STREAM, count=50)
    closed = [e for _, e in entries if e[b"symbol"] == b"FTBTC"]
    assert closed
    assert int(closed[0][b"feature_time_ns"]) == (T0 + pd.Timedelta(minutes=12)).value
    assert int(closed[0][b"close_receive_time_ns"]) == 0  # the clock closed it
    assert int(closed[1][b"close_receive_time_ns"]) == received  # a trade of the next bar did
    clear_symbols(s)
