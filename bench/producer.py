"""Market producer alone: replay exchange (``max``) → ``streamers.market_producer`` → broker.

Both run as the supervisor runs them (``hft exchange``, ``python -m streamers.market_producer``)
on ``port_base + 70`` with a topic of their own, against the stack's Kafka (``hft stack up
kafka`` first). One replay of the 2024-08-08/09 spot captures (34,419 trades; ``--quick``: the
first 10,000).

Keys: ``throughput_ticks_per_s`` (trades / seconds from the producer's first tick until every
tick is acknowledged, read from its ``market_producer_ticks_out`` counter and the topic's end
offsets), ``producer_cpu_us_per_tick`` (CPU of the producer process per tick, start-up
subtracted), ``exchange_cpu_s``, ``ticks_in_topic``.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from hft.config import REPO_ROOT, Settings

PORT_SHIFT = 70


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _metric(url: str, name: str) -> float | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            for line in resp.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
    except OSError:
        return None
    return None


def _topic_count(settings: Settings, topic: str) -> int:
    from confluent_kafka import TopicPartition
    from confluent_kafka.admin import AdminClient

    from hft.bus.client import make_consumer

    md = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers()}).list_topics(topic, timeout=10)
    parts = md.topics[topic].partitions if topic in md.topics else {}
    c = make_consumer(settings, "bench-producer-count", "bench-producer-count")
    try:
        return sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts)
    finally:
        c.close()


def run(settings: Settings, quick: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """Replay once at max into a fresh topic; measure throughput and CPU per tick."""
    n = 10_000 if quick else 34_419
    base = settings.port_base + PORT_SHIFT
    topic = f"bench_producer_{secrets.token_hex(3)}"
    env = {
        **os.environ,
        "HFT_HOME": str(settings.home_dir),
        "HFT_PORT_BASE": str(base),
        "HFT_MARKET": "replay",
        "HFT_TOPIC_TICKS": topic,
        "HFT_TOPIC_DLQ": topic + ".dlq",
        "HFT_DATA_DIR": str(settings.data_dir),
    }
    s = Settings(
        home=settings.home_dir, port_base=base, data_dir=settings.data_dir, market="replay", topic_ticks=topic
    )
    s.kafka_bootstrap_servers()  # fails with a clear message when no broker runs
    hft = str(Path(sys.executable).with_name("hft"))
    logs = settings.home_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / "bench-exchange.log", "wb") as exlog, open(logs / "bench-producer.log", "wb") as prlog:
        ex = subprocess.Popen(
            [hft, "exchange", "--speed", "max", "--max-trades", str(n), "--metrics-port", "0"],
            env=env,
            cwd=REPO_ROOT,
            stdout=exlog,
            stderr=subprocess.STDOUT,
        )
        status_url = f"http://{s.bind_host}:{s.port('exchange')}/control/status"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(status_url, timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        ex_cpu0 = _cpu_s(ex.pid)
        pr = subprocess.Popen(
            [sys.executable, "-m", "streamers.market_producer"],
            env=env,
            cwd=REPO_ROOT,
            stdout=prlog,
            stderr=subprocess.STDOUT,
        )
        murl = f"http://{s.bind_host}:{s.port('metrics_market_producer')}/metrics"
        try:
            t_first = cpu_first = None
            sent = 0.0
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline and sent < n:
                sent = _metric(murl, "market_producer_ticks_out_total") or 0.0
                if sent > 0 and t_first is None:
                    t_first, cpu_first, sent_first = time.monotonic(), _cpu_s(pr.pid), sent
                time.sleep(0.05)
            while time.monotonic() < deadline and _topic_count(s, topic) < n:
                time.sleep(0.05)
            t_last = time.monotonic()
            cpu_last = _cpu_s(pr.pid)
            ex_cpu = _cpu_s(ex.pid) - ex_cpu0
        finally:
            for p in (pr, ex):
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
    in_topic = _topic_count(s, topic)
    if t_first is None or cpu_first is None:
        raise RuntimeError(f"producer sent nothing; see {logs / 'bench-producer.log'}")
    ticks = n - sent_first
    return (
        {
            "trades": n,
            "speed": "max",
            "source": "spot captures 2024-08-08/09 BTCUSDT+ETHUSDT",
            "topic": topic,
            "kafka_linger_ms": settings.kafka_linger_ms,
        },
        {
            "throughput_ticks_per_s": round(ticks / (t_last - t_first), 1),
            "producer_cpu_us_per_tick": round(1e6 * (cpu_last - cpu_first) / ticks, 1),
            "exchange_cpu_s": round(ex_cpu, 2),
            "ticks_in_topic": in_topic,
            "seconds": round(t_last - t_first, 2),
            "load_average": os.getloadavg(),
        },
    )
