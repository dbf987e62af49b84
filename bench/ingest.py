"""Tick ingestor throughput into PostgreSQL (the ingestor alone: the topic is filled first).

On a private stack (``bench.pipeline.Rig``: ``<home>/bench-stack``, ``port_base + 60``, a fresh
broker), N recorded spot trades (repeated as loop mode repeats them, renamed to bench-only
symbols) are produced into ``market_ticks`` first; then ``python -m streamers.tick_ingestor``
starts and drains them. ``throughput_ticks_per_s`` = N / seconds from the first stored row to
the last (process start-up and the consumer-group join excluded, reported apart). Also
``writer_ticks_per_s``: ``hft.storage.ticks.TickWriter`` alone, in-process, 5,000-tick batches
(decode excluded, bars included), and ``writer_no_bars_ticks_per_s`` without the bar upserts.
"""

from __future__ import annotations

import os
import time
from typing import Any

from bench.pipeline import Rig, bench_symbols, replay_trades
from hft.config import Settings


def _ticks(settings: Settings, names: dict[str, str], n: int) -> list[Any]:
    from hft.market.replay import trade_event
    from hft.market.ticks import tick_from_trade

    trades = replay_trades(settings.data_dir, names, n, start_ms=time.time_ns() // 1_000_000)
    out = [tick_from_trade(trade_event(t), time.time_ns(), "replay") for ts in trades.values() for t in ts]
    out.sort(key=lambda t: t.trade_time_ns)
    return out


def _writer_rate(settings: Settings, ticks: list[Any], intervals: tuple[str, ...]) -> float:
    from hft.storage.ticks import TickWriter

    writer = TickWriter(settings, intervals=intervals)
    t0 = time.perf_counter()
    try:
        for i in range(0, len(ticks), 5000):
            writer.write(ticks[i : i + 5000])
    finally:
        writer.close()
    return len(ticks) / (time.perf_counter() - t0)


def _delete(settings: Settings, symbols: list[str]) -> None:
    from hft.storage import db

    with db.connect(settings, autocommit=True) as conn:
        conn.execute("DELETE FROM market.ticks WHERE symbol = ANY(%s)", (symbols,))
        conn.execute("DELETE FROM market.bars WHERE symbol = ANY(%s)", (symbols,))


def run(settings: Settings, quick: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fill the topic with N ticks, then time the ingestor draining it into PostgreSQL."""
    from hft.bus.client import make_producer
    from hft.storage import db

    n = 100_000 if quick else int(os.environ.get("HFT_BENCH_INGEST_TICKS", "1000000"))
    load_before = os.getloadavg()[0]  # the 2 cores are shared: say how busy they were
    rig = Rig.private(settings, bench_symbols())
    rig.up()
    backend = db.backend(rig.settings)
    params: dict[str, Any] = {
        "ticks": n,
        "batch_max": 5000,
        "bar_intervals": ["1m", "15m"],
        "backend": backend.describe(),
        "symbols": rig.symbols,
        "source": "spot captures 2024-08-08/09 BTCUSDT+ETHUSDT, repeated, times moved to now",
    }
    try:
        ticks = _ticks(settings, rig.names, n)
        # writer alone (in-process), then the rows go so the ingestor starts from an empty table
        w_small = ticks[: min(len(ticks), 100_000)]
        writer_rate = _writer_rate(rig.settings, w_small, ("1m", "15m"))
        _delete(rig.settings, rig.symbols)
        writer_nobars = _writer_rate(rig.settings, w_small, ())
        _delete(rig.settings, rig.symbols)

        producer = make_producer(rig.settings, "bench-ingest", **{"linger.ms": 5})
        t0 = time.perf_counter()
        for t in ticks:
            while True:
                try:
                    producer.produce(rig.settings.topic_ticks, t.SerializeToString(), t.symbol.encode())
                    break
                except BufferError:
                    producer.poll(0.05)
            producer.poll(0)
        if producer.flush(120):
            raise RuntimeError("ticks not acknowledged by Kafka within 120 s")
        produce_s = time.perf_counter() - t0

        t_start = time.monotonic()
        rig.start("tick-ingestor")
        t_first = t_done = None
        stored = 0
        last_progress, last_stored = time.monotonic(), -1
        while time.monotonic() - last_progress < 60:
            stored = rig.stored()[0]
            now = time.monotonic()
            if stored != last_stored:
                last_progress, last_stored = now, stored
            if stored and t_first is None:
                t_first = now
            if stored >= n:
                t_done = now
                break
            time.sleep(0.1)
        metrics = rig.metrics("tick-ingestor")
        rows, distinct = rig.stored()
    finally:
        rig.stop_all()
        _delete(rig.settings, rig.symbols)
        rig.down()
    if t_first is None or t_done is None:
        raise RuntimeError(
            f"ingestor stored {stored} of {n} ticks, then nothing for 60 s "
            f"(see {rig.settings.home_dir / 'logs' / 'tick-ingestor.log'})"
        )
    drain_s = t_done - t_first
    results = {
        "throughput_ticks_per_s": round(n / drain_s) if drain_s > 0 else None,
        "drain_seconds": round(drain_s, 2),
        "startup_to_first_row_s": round(t_first - t_start, 2),
        "writer_ticks_per_s": round(writer_rate),
        "writer_no_bars_ticks_per_s": round(writer_nobars),
        "producer_ticks_per_s": round(n / produce_s),
        "rows": rows,
        "distinct_trades": distinct,
        "duplicates": rows - distinct,
        "write_latency_s_sum": metrics.get("tick_ingestor_write_latency_seconds_sum"),
        "batches": metrics.get("tick_ingestor_write_latency_seconds_count"),
        "load_average_1m_before": round(load_before, 2),
        "load_average_1m_after": round(os.getloadavg()[0], 2),
    }
    return params, results
