"""The market producer: Binance (or the replay exchange) trade stream → Kafka ``market_ticks``.

The stream client, gap fill and encoding live in :mod:`hft.market.stream` and
:mod:`hft.market.kafka_sink`; :func:`run` wires them to the settings, resumes after the last
trade id the topic holds, exports their counters, and on stop flushes the producer.
"""

from __future__ import annotations

import asyncio
import logging
import time

from confluent_kafka import KafkaException
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import REGISTRY, Collector

from hft.bus.topics import ensure_topics
from hft.config import Settings
from hft.market.kafka_sink import KafkaTickSink, last_trade_ids, make_producer
from hft.market.rest import BinanceRest
from hft.market.stream import TradeStream

log = logging.getLogger(__name__)

SEND_LATENCY = Histogram(
    "market_producer_send_latency_seconds",
    "Kafka send → ack (sampled)",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
HEARTBEAT = Gauge("market_producer_heartbeat_timestamp_seconds", "Last loop heartbeat (unix time)")
UP = Gauge("market_producer_connected", "1 while the WebSocket is connected")
SEND_ERRORS = Counter("market_producer_send_errors", "Kafka sends that failed after retries")


class _StatsCollector(Collector):
    """Exports the stream client's and sink's plain counters (no per-message metric cost)."""

    def __init__(self, stream: TradeStream, sink: KafkaTickSink) -> None:
        self.stream, self.sink = stream, sink

    def collect(self) -> list[Metric]:
        st = self.stream.stats
        out: list[Metric] = []
        for name, doc, value in [
            ("market_producer_messages_in", "WebSocket frames received", st.frames),
            ("market_producer_ticks_out", "Ticks sent to Kafka", self.sink.sent),
            ("market_producer_dead_lettered", "Frames sent to the dead-letter topic", self.sink.dead),
            ("market_producer_reconnects", "Unplanned WebSocket reconnects", st.reconnects),
            ("market_producer_planned_reconnects", "Reconnects before the 24 h cut", st.planned_reconnects),
            ("market_producer_gaps_detected", "Trade-id gaps seen on the live stream", st.gaps_detected),
            ("market_producer_gaps_filled", "Gaps filled through REST", st.gaps_filled),
            ("market_producer_gaps_unfilled", "Gaps REST could not fill", st.gaps_unfilled),
            ("market_producer_trades_filled", "Trades fetched through REST", st.filled),
            ("market_producer_duplicates", "Trades seen twice and dropped", st.duplicates),
        ]:
            c = CounterMetricFamily(name, doc)
            c.add_metric([], value)
            out.append(c)
        g = GaugeMetricFamily("market_producer_last_trade_id", "Last trade id sent", labels=["symbol"])
        for sym, tid in st.last_trade_id.items():
            g.add_metric([sym], tid)
        out.append(g)
        return out


def endpoints(s: Settings) -> tuple[str, str, str]:
    """WebSocket URL, REST URL and venue name for the configured market."""
    if s.market == "replay":
        host = f"{s.bind_host}:{s.port('exchange')}"
        return f"ws://{host}", f"http://{host}", "replay"
    return s.binance_ws_url, s.binance_rest_url, "binance-spot"


async def run(s: Settings, stop: asyncio.Event) -> int:
    """Stream into Kafka until ``stop``; return the exit status."""
    ws_url, rest_url, venue = endpoints(s)
    # the topics exist before the first send (created with their settings when missing)
    await asyncio.to_thread(ensure_topics, s)
    producer = make_producer(s, "market-producer")
    sink = KafkaTickSink(producer, s.topic_ticks, s.topic_dlq, on_latency=SEND_LATENCY.observe)
    rest = BinanceRest(rest_url)
    try:
        # resume after what already reached the topic: a restart loses nothing (REST catch-up)
        resume = await asyncio.to_thread(last_trade_ids, s, s.topic_ticks, list(s.symbols))
    except (KafkaException, OSError) as exc:  # a fresh topic or a slow broker: start from the live stream
        log.warning(
            "could not read the last trade ids from %s (%r); starting from the live stream",
            s.topic_ticks,
            exc,
        )
        resume = {}
    if resume:
        log.info("resuming after the last delivered trade ids %s", resume)
    stream = TradeStream(ws_url, rest, list(s.symbols), sink, venue=venue, last_ids=resume)
    REGISTRY.register(_StatsCollector(stream, sink))
    log.info("streaming %s from %s into %s (dead letters: %s)", s.symbols, ws_url, s.topic_ticks, s.topic_dlq)
    task = asyncio.create_task(stream.run(stop))
    status = 0
    try:
        while not task.done():
            sink.service()
            HEARTBEAT.set(time.time())
            UP.set(1 if stream.connected.is_set() else 0)
            if sink.failed is not None:
                SEND_ERRORS.inc(sink.errors)
                log.error("stopping: Kafka sends fail (%r)", sink.failed)
                status = 1
                stop.set()
            await asyncio.wait({task}, timeout=1.0)
        task.result()
    finally:
        stop.set()
        await rest.aclose()
        log.info("flushing %d ticks sent", sink.sent)
        unacked = await asyncio.to_thread(sink.flush)
        if unacked:
            log.error(
                "%d ticks not acknowledged by Kafka at exit (the next start resumes after the "
                "last delivered trade id and fetches them through REST)",
                unacked,
            )
        log.info(
            "stopped: %d ticks, %d dead letters, %d gaps filled, %d reconnects",
            sink.sent,
            sink.dead,
            stream.stats.gaps_filled,
            stream.stats.reconnects,
        )
    return status if sink.failed is None or status else 1
