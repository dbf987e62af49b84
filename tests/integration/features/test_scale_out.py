"""Scale-out by consumer group: two feature calculators and two tick ingestors share the partitions.

Four symbols, one per partition of a fresh 4-partition topic, replay real trades (the calculator
test's, renamed). One calculator starts alone and reads part of the topic; a second joins the
group mid-stream, so partitions move between them (cooperative-sticky rebalance): the one that
gives a partition up forgets its symbols' bars, the one that takes it re-reads from the committed
offset (the first tick of each open bar) and warms the symbol up from the stored bars. Two
ingestors share the same topic in their own group. At the end: every trade stored exactly once,
both members of each group held partitions, and every streamed bar's features equal the batch
features over ``market.bars`` (1e-9), whichever calculator computed them.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from hft.bus.client import partition_for
from hft.config import Settings
from hft.features import FEATURE_SPEC_FULL, compute_features
from hft.market.ohlcv import read_ohlcv_csv
from tests.integration.features.test_calculator import HISTORY, PAIRS, T0, _ticks
from tests.kafka_helpers import send_ticks

pytestmark = pytest.mark.integration


def _four_symbols() -> dict[str, str]:
    """Symbol -> the real pair it replays: two of each, all four in different partitions of 4."""
    out: dict[str, str] = {}
    used: set[int] = set()
    for i in range(1000):
        for base, pair in (("SOBTC", "FTBTC"), ("SOETH", "FTETH")):
            name = f"{base}{i}"
            p = partition_for(name.encode(), 4)
            if p not in used and sum(v == pair for v in out.values()) < 2:
                out[name] = pair
                used.add(p)
        if len(out) == 4:
            return out
    raise AssertionError("no four symbols in four partitions")


def _clear(settings: Settings, symbols: list[str]) -> None:
    from hft.storage import db

    with db.connect(settings) as conn:
        for table in ("market.ticks", "market.bars", "features.bar_features"):
            conn.execute(f"DELETE FROM {table} WHERE symbol = ANY(%s)", (symbols,))
        conn.commit()


def test_two_calculators_and_two_ingestors_share_the_partitions_and_every_bar_stays_right(
    feature_settings: Settings, data_dir: Path
) -> None:
    from hft.features.offline import read_features
    from hft.features.streaming import Calculator
    from hft.storage import db
    from hft.storage.bars import read_bars, upsert_klines
    from hft.storage.ingest import Ingestor

    run = uuid.uuid4().hex[:8]
    s = feature_settings.model_copy(
        update={
            "bar_interval": "1m",
            "topic_ticks": f"so_ticks_{run}",
            "topic_dlq": f"so_ticks_{run}.dlq",
            "kafka_partitions": 4,
        }
    )
    symbols = _four_symbols()
    names = list(symbols)
    _clear(s, names)
    received = time.time_ns()
    ticks: list[object] = []
    with db.connect(s) as conn:
        for sym, pair in symbols.items():
            kl, tr = PAIRS[pair]
            hist = read_ohlcv_csv(data_dir / kl)
            upsert_klines(conn, hist[hist.index < T0].iloc[-HISTORY:], sym, "1m")
            ticks += _ticks(data_dir, sym, tr, received)
    total = send_ticks(s, ticks)

    # two ingestors in one group, from the start
    ingestors = [Ingestor(s, batch_max=2000, linger_ms=20) for _ in range(2)]
    threads = [
        threading.Thread(target=i.run, name=f"ingestor-{n}", daemon=True) for n, i in enumerate(ingestors)
    ]
    for t in threads:
        t.start()

    first = Calculator(s)
    second: Calculator | None = None
    seen = [0, 0]
    try:
        deadline = time.monotonic() + 120
        while seen[0] < total // 3 and time.monotonic() < deadline:
            seen[0] += first.run_once(timeout_ms=200)
        assert seen[0] >= total // 3, f"the first calculator read {seen[0]} of {total}"
        assert len(first._assigned) == 4
        second = Calculator(s)  # joins mid-stream: the group rebalances
        idle_rounds = 0
        while time.monotonic() < deadline and idle_rounds < 10:
            a = first.run_once(timeout_ms=100)
            b = second.run_once(timeout_ms=100)
            seen[0] += a
            seen[1] += b
            # done when both hold partitions and neither has anything left to read
            idle_rounds = idle_rounds + 1 if (a == b == 0 and first._assigned and second._assigned) else 0
        print(
            f"\ncalculators read {seen} ticks of {total} (re-reads after the hand-over included); "
            f"partitions {sorted(p for _t, p in first._assigned)} / {sorted(p for _t, p in second._assigned)}"
        )
        assert first._assigned, "the first calculator kept no partition"
        assert second._assigned, "the second calculator got no partition"
        assert seen[1] > 0
        assert sum(seen) >= total
    finally:
        for c in (first, second):
            if c is not None:
                c.stop.set()
                c.close()

    # the ingestors: everything stored exactly once, both held partitions
    def stored() -> tuple[int, int]:
        with db.connect(s, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*), count(DISTINCT (symbol, trade_id)) FROM market.ticks "
                "WHERE symbol = ANY(%s)",
                (names,),
            ).fetchone()
        assert row is not None
        return int(row[0]), int(row[1])

    end = time.monotonic() + 60
    while stored()[1] < total and time.monotonic() < end:
        time.sleep(0.2)
    for i in ingestors:
        i.stop.set()
    for t in threads:
        t.join(30)
    rows, distinct = stored()
    print(f"ingestors stored {rows} rows, {distinct} distinct, of {total}")
    assert (rows, distinct) == (total, total)

    # every streamed bar equals the batch over market.bars, whichever calculator computed it
    cols = list(FEATURE_SPEC_FULL.names)
    try:
        with db.connect(s) as conn:
            for sym in names:
                bars = read_bars(conn, sym, "1m")
                streamed = read_features(conn, sym, "1m", start=T0.to_pydatetime())
                bars = bars.assign(vwap=bars["vwap"].astype("float64"))
                batch = compute_features(
                    bars.drop(columns=["close_time", "source"]).astype("float64"), FEATURE_SPEC_FULL
                )
                closed = (bars.index >= T0).sum() - 1  # the last bar stays open (no clock close here)
                assert len(streamed) >= closed >= 10, (
                    f"{sym}: {len(streamed)} streamed bars of {closed} closed"
                )
                for n in cols:
                    np.testing.assert_allclose(
                        streamed[n].to_numpy(),
                        batch.loc[streamed.index, n].to_numpy(),
                        rtol=0,
                        atol=1e-9,
                        equal_nan=True,
                        err_msg=f"{sym} {n}",
                    )
                assert streamed.index.min() == T0  # open time of the first streamed bar
    finally:
        _clear(s, names)
