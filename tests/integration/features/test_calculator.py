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
PAIRS = {
    "FTBTC": (
        "klines_1m/BTCUSDT_1m_ohlcv_2025-05-20_2025-08-18.csv.gz",
        "trades/spot_BTCUSDT_trades_2024-08-08T2354Z_2024-08-09T0005Z.csv.gz",
    ),
    "FTETH": (
        "klines_1m/ETHUSDT_1m_ohlcv_2025-05-20_2025-08-18.csv.gz",
        "trades/spot_ETHUSDT_trades_2024-08-08T2354Z_2024-08-09T0005Z.csv.gz",
    ),
}
HISTORY = 700  # stored 1m bars before T0 (warm-up needs 524)


def _ticks(data_dir: Path, symbol: str, trades_rel: str, received: int) -> list[object]:
    from hft.schema.market_pb2 import Tick

    tr = read_trades(data_dir / trades_rel)
    first = int(tr["trade_time_ns"].iloc[0])
    shift = T0.value - (first - first % 60_000_000_000)
    now = received
    return [
        Tick(
            symbol=symbol,
            trade_id=int(i),
            price=float(p),
            quantity=float(q),
            buyer_is_maker=bool(m),
            trade_time_ns=int(t) + shift,
            event_time_ns=int(t) + shift,
            receive_time_ns=now,
            source=Tick.SOURCE_STREAM,
            venue="replay",
        )
        for i, t, p, q, m in tr[
            ["trade_id", "trade_time_ns", "price", "quantity", "buyer_is_maker"]
        ].itertuples(index=False)
    ]


@pytest.fixture
def replay_settings(feature_settings: Settings) -> Settings:
    """The test stack with 1m bars and a topic of its own (other tests share the broker)."""
    return feature_settings.model_copy(
        update={"bar_interval": "1m", "topic_ticks": f"ft_ticks_{uuid.uuid4().hex[:8]}"}
    )


def test_replay_through_the_calculator_matches_batch_features_of_market_bars(
    replay_settings: Settings, data_dir: Path
) -> None:
    import redis

    from hft.features.calculator import CLOSED_STREAM, read_partial
    from hft.features.offline import read_features
    from hft.features.online import OnlineFeatures
    from hft.features.store import apply
    from hft.features.streaming import Calculator
    from hft.storage import db
    from hft.storage.bars import read_bars, upsert_klines
    from hft.storage.ticks import TickWriter
    from tests.kafka_helpers import send_ticks

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
    for ts in ticks.values():
        writer.write(ts)  # what the tick ingestor does with the same messages
    send_ticks(s, [t for ts in ticks.values() for t in ts])
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
        calc.close()  # the offline writer writes what it holds, then the stores close

    online = OnlineFeatures(s, FEATURE_SPEC_FULL)
    names = list(FEATURE_SPEC_FULL.names)
    with db.connect(s) as conn:
        for sym in PAIRS:
            bars = read_bars(conn, sym, "1m")
            streamed = read_features(conn, sym, "1m", start=T0.to_pydatetime())
            bars = bars.assign(vwap=bars["vwap"].astype("float64"))
            batch = compute_features(
                bars.drop(columns=["close_time", "source"]).astype("float64"), FEATURE_SPEC_FULL
            )
            assert len(streamed) == (bars.index >= T0).sum() >= 10
            # every streamed bar equals the batch over market.bars (NaN where both are absent)
            for n in names:
                np.testing.assert_allclose(
                    streamed[n].to_numpy(),
                    batch.loc[streamed.index, n].to_numpy(),
                    rtol=0,
                    atol=1e-9,
                    equal_nan=True,
                    err_msg=f"{sym} {n}",
                )
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
    with db.connect(s) as conn:
        stored = read_bars(conn, "FTBTC", "1m")["close"]
    for e in closed:  # the announced close is the close of the bar built from the same trades
        open_time = pd.Timestamp(int(e[b"open_time_ns"]), tz="UTC")
        assert float(e[b"close"]) == pytest.approx(float(stored.loc[open_time]), rel=1e-12), open_time
    clear_symbols(s)


def _partition(key: str, partitions: int = 4) -> int:
    from hft.bus.client import partition_for

    return partition_for(key.encode(), partitions)  # the producer's partitioner (murmur2, as Java's)


def test_a_quiet_symbol_s_bar_closes_while_other_partitions_are_still_busy(
    replay_settings: Settings, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A symbol that stops trading gets its last bar closed by the clock once its own partition is
    read to the end, not only when the whole topic goes idle (finding 6: its open bar pinned the
    committed offsets, so every restart re-read the topic from it)."""
    import redis

    import hft.features.streaming as fc
    from hft.features.calculator import CLOSED_STREAM, PARTIAL_KEY
    from hft.storage import db
    from tests.kafka_helpers import send_ticks

    s = replay_settings
    quiet = next(f"FTQUIET{i}" for i in range(100) if _partition(f"FTQUIET{i}") != _partition("FTBUSY"))
    busy = "FTBUSY"
    received = time.time_ns()
    q_ticks = [
        t
        for t in _ticks(data_dir, quiet, PAIRS["FTBTC"][1], received)
        if t.trade_time_ns < T0.value + 30_000_000_000
    ]  # type: ignore[attr-defined]  # its first 30 s only
    b_ticks = _ticks(data_dir, busy, PAIRS["FTETH"][1], received)  # 11 minutes of trades
    send_ticks(s, [*q_ticks, *b_ticks])
    last_q = max(t.trade_time_ns for t in q_ticks)  # type: ignore[attr-defined]
    monkeypatch.setattr(fc, "QUIET_CHECK_S", 0.0)
    # the wall clock maps to 2 minutes after the quiet symbol's first bar opened: that bar is over
    calc = fc.Calculator(
        s, batch_max=100, clock=lambda: received + (T0 + pd.Timedelta(minutes=2)).value - last_q
    )
    r = redis.Redis.from_url(s.redis_dsn)
    start_id = r.xinfo_stream(CLOSED_STREAM)["last-generated-id"] if r.exists(CLOSED_STREAM) else b"0-0"

    def announced(sym: str) -> list[dict[bytes, bytes]]:
        return [
            f
            for _id, f in r.xrange(CLOSED_STREAM, min=f"({start_id.decode()}", max="+")
            if f[b"symbol"] == sym.encode()
        ]

    try:
        busy_backlog_then = None
        deadline = time.monotonic() + 60
        started = False
        while not announced(quiet) and time.monotonic() < deadline:
            n = calc.run_once(timeout_ms=500)
            # (the first polls return nothing while the consumer joins its group)
            assert n > 0 or not started, "the topic went idle before the quiet bar closed"
            started = started or n > 0
            tp = calc._open_offsets.get(busy, (None, 0))[0]
            if tp is not None and announced(quiet):
                from confluent_kafka import TopicPartition

                ktp = TopicPartition(*tp)
                high = calc.consumer.get_watermark_offsets(ktp, cached=True)[1]
                busy_backlog_then = high - calc.consumer.position([ktp])[0].offset
        got = announced(quiet)
        assert len(got) == 1, "the quiet symbol's bar was not closed while the topic was busy"
        assert int(got[0][b"open_time_ns"]) == T0.value
        assert busy_backlog_then is not None
        assert busy_backlog_then > 0  # the busy partition still had ticks to read
        assert calc.calc.partial(quiet) is None  # nothing open: it no longer pins the committed offset
    finally:
        calc.stop.set()
        calc.close()  # the offline writer writes what it holds, then the stores close
        with db.connect(s) as conn:
            conn.execute("DELETE FROM features.bar_features WHERE symbol = ANY(%s)", ([quiet, busy],))
            conn.commit()
        r.delete(PARTIAL_KEY.format(symbol=quiet), PARTIAL_KEY.format(symbol=busy))
