"""The offline row is written off the consuming thread, and offsets never pass an unwritten bar.

The calculator announces a closed bar as soon as its features are online and hands the
``features.bar_features`` row to its offline writer's thread. Here that thread is held back (a
gate in front of the real write): the calculator must keep folding ticks and announcing bars, and
must not commit an offset past the first tick of a bar whose offline row is not written. Once the
gate opens, the rows appear and the committed offset moves on. Real trades, real broker, real
PostgreSQL and Redis.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest

from hft.config import Settings
from hft.market.ohlcv import read_ohlcv_csv
from tests.integration.features.conftest import clear_symbols
from tests.integration.features.test_calculator import HISTORY, PAIRS, T0, _ticks

pytestmark = pytest.mark.integration

SYMBOL = "FTBTC"


def test_offsets_wait_for_the_offline_rows_and_ticks_do_not(
    feature_settings: Settings, data_dir: Path
) -> None:
    import redis
    from confluent_kafka import TopicPartition

    from hft.features.calculator import CLOSED_STREAM
    from hft.features.store import apply
    from hft.features.streaming import Calculator, OfflineWriter
    from hft.storage import db
    from hft.storage.bars import upsert_klines
    from tests.kafka_helpers import send_ticks

    s = feature_settings.model_copy(
        update={"bar_interval": "1m", "topic_ticks": f"ft_ow_{uuid.uuid4().hex[:8]}", "kafka_partitions": 1}
    )
    clear_symbols(s)
    apply(s)
    kl, tr = PAIRS[SYMBOL]
    received = time.time_ns()
    with db.connect(s) as conn:
        hist = read_ohlcv_csv(data_dir / kl)
        upsert_klines(conn, hist[hist.index < T0].iloc[-HISTORY:], SYMBOL, "1m")
    ticks = [
        t
        for t in _ticks(data_dir, SYMBOL, tr, received)
        if t.trade_time_ns < (T0 + pd.Timedelta(minutes=3)).value
    ]  # type: ignore[attr-defined]
    send_ticks(s, ticks)
    # offsets in the one partition are the ticks' positions; bars T0 and T0+1m close, T0+2m stays open
    first_of_third = sum(1 for t in ticks if t.trade_time_ns < (T0 + pd.Timedelta(minutes=2)).value)  # type: ignore[attr-defined]
    assert 0 < first_of_third < len(ticks)

    # a frozen wall clock at the ticks' receive time: the clock never closes the open bar
    calc = Calculator(s, batch_max=200, clock=lambda: received, commit_every_s=0.0)
    gate = threading.Event()
    written: list[int] = []

    def held_back(closed: list) -> float:  # type: ignore[type-arg]
        gate.wait(120)
        seconds = calc.sink.write_offline(closed)
        written.extend(c.bar.open_time_ns for c in closed if c.features is not None)
        return seconds

    calc.offline.close()
    calc.offline = OfflineWriter(held_back, calc.stop)
    r = redis.Redis.from_url(s.redis_dsn)
    start_id = r.xinfo_stream(CLOSED_STREAM)["last-generated-id"] if r.exists(CLOSED_STREAM) else b"0-0"

    def announced() -> list[int]:
        return [
            int(f[b"open_time_ns"])
            for _id, f in r.xrange(CLOSED_STREAM, min=f"({start_id.decode()}", max="+")
            if f[b"symbol"] == SYMBOL.encode() and f[b"has_features"] == b"1"
        ]

    def committed() -> int:
        return int(calc.consumer.committed([TopicPartition(s.topic_ticks, 0)], timeout=10)[0].offset)

    def offline_rows() -> int:
        with db.connect(s) as conn:
            return int(
                conn.execute(
                    "SELECT count(*) FROM features.bar_features WHERE symbol = %s AND interval = '1m' "
                    "AND event_timestamp > %s",
                    (SYMBOL, T0.to_pydatetime()),
                ).fetchone()[0]
            )

    try:
        deadline = time.monotonic() + 90
        while (
            len(announced()) < 2
            or calc.consumer.position([TopicPartition(s.topic_ticks, 0)])[0].offset < len(ticks)
        ) and time.monotonic() < deadline:
            calc.run_once(timeout_ms=200)
        for _ in range(5):  # idle polls: each tries to commit
            calc.run_once(timeout_ms=50)
        bars = [T0.value, (T0 + pd.Timedelta(minutes=1)).value]
        got, held = announced(), committed()
        print(
            f"gate shut: announced {got}, written {written}, committed offset {held}, rows {offline_rows()}"
        )
        assert got == bars, "the calculator stopped announcing while the offline write was held back"
        assert offline_rows() == 0
        assert not written
        # bar T0's first tick is offset 0: nothing past it may be committed while its row is unwritten
        assert held <= 0, f"committed offset {held} passes bar T0, whose offline row is not written"

        gate.set()
        deadline = time.monotonic() + 30
        while committed() < first_of_third and time.monotonic() < deadline:
            calc.run_once(timeout_ms=50)
        print(f"gate open: written {written}, committed offset {committed()}, rows {offline_rows()}")
        assert written == bars
        assert offline_rows() == 2
        # now the oldest open bar (T0+2m) is what holds the committed offset back
        assert committed() == first_of_third
    finally:
        gate.set()
        calc.stop.set()
        calc.close()
        clear_symbols(s)
