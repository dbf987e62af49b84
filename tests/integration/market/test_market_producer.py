"""Replay exchange → market producer → Kafka, all three real (issue 3's "Done when").

The exchange replays the real 2024-08-08/09 BTCUSDT + ETHUSDT spot captures at ``max``.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from hft.config import REPO_ROOT
from hft.market.replay import default_capture_paths, load_capture_trades
from hft.market.ticks import Tick

from .conftest import Market, decode_dead_letters, decode_ticks, read_topic

pytestmark = pytest.mark.integration

SYMBOLS = ["BTCUSDT", "ETHUSDT"]
N_FAULT_RUN = 8000


@pytest.fixture(scope="module")
def captured(data_dir: Path) -> list[tuple[str, int, int, int]]:
    """(symbol, trade id, trade time ms, event time ms) of every captured trade, in replay order."""
    return [
        (t.symbol, t.trade_id, t.trade_time_ms, t.event_time_ms)
        for t in load_capture_trades(default_capture_paths(data_dir, SYMBOLS))
    ]


def _by_symbol(ticks: list[Tick]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for t in ticks:
        out.setdefault(t.symbol, []).append(t.trade_id)
    return out


def _stop(p: subprocess.Popen[bytes]) -> int:
    p.send_signal(signal.SIGTERM)
    return p.wait(30)


def _metric(url: str, name: str) -> float:
    for line in httpx.get(url, timeout=5).text.splitlines():
        if line.startswith((name + " ", name + "{")):
            return float(line.rsplit(" ", 1)[1])
    raise KeyError(name)


def test_replay_puts_exactly_the_captured_trades_into_kafka(
    market: Market,
    start_exchange: Callable[..., subprocess.Popen[bytes]],
    start_producer: Callable[[], subprocess.Popen[bytes]],
    captured: list[tuple[str, int, int, int]],
) -> None:
    start_exchange("--speed", "max")
    producer = start_producer()
    ticks = decode_ticks(read_topic(market.settings, market.topic, until=len(captured)))
    assert _stop(producer) == 0

    assert len(ticks) == len(captured) == 34419
    ids = _by_symbol(ticks)
    for sym in SYMBOLS:
        want = [c[1] for c in captured if c[0] == sym]
        assert ids[sym] == want  # same ids, contiguous, in order within the symbol's partition
        assert want == list(range(want[0], want[0] + len(want)))
    got = sorted((t.symbol, t.trade_id, t.trade_time_ns // 10**6, t.event_time_ns // 10**6) for t in ticks)
    assert got == sorted(captured)  # exchange trade and event times preserved
    assert all(t.trade_time_ns % 10**6 == 0 and t.event_time_ns % 10**6 == 0 for t in ticks)
    assert all(t.receive_time_ns not in (t.trade_time_ns, t.event_time_ns) for t in ticks)
    assert all(t.source == Tick.SOURCE_STREAM and t.venue == "replay" for t in ticks)
    assert read_topic(market.settings, market.dlq, until=0, timeout=3) == []


def test_drops_and_skips_still_give_every_trade_exactly_once(
    market: Market,
    start_exchange: Callable[..., subprocess.Popen[bytes]],
    start_producer: Callable[[], subprocess.Popen[bytes]],
    captured: list[tuple[str, int, int, int]],
) -> None:
    captured = captured[:N_FAULT_RUN]  # the first trades keep the test short on a busy machine
    start_exchange(
        "--speed",
        "max",
        "--max-trades",
        str(N_FAULT_RUN),
        "--drop-every",
        "1500",
        "--skip-every",
        "700",
        "--skip",
        "2",
    )
    # malformed frames switched on at run time through the control endpoint
    r = httpx.post(f"{market.exchange_url}/control/faults", json={"malformed_every": 1100}, timeout=5)
    assert r.json() == {"drop_every": 1500, "skip_every": 700, "skip": 2, "malformed_every": 1100}
    producer = start_producer()
    ticks = decode_ticks(read_topic(market.settings, market.topic, until=len(captured), settle_s=3))
    gaps_filled = _metric(market.producer_metrics_url, "market_producer_gaps_filled_total")
    reconnects = _metric(market.producer_metrics_url, "market_producer_reconnects_total")
    assert _stop(producer) == 0

    counts = Counter((t.symbol, t.trade_id) for t in ticks)
    assert len(counts) == len(captured)
    assert max(counts.values()) == 1  # no duplicates from the REST/live overlap
    assert set(counts) == {(c[0], c[1]) for c in captured}
    assert any(t.source == Tick.SOURCE_REST_GAP_FILL for t in ticks)
    assert gaps_filled >= 5
    assert reconnects >= 4

    dead = decode_dead_letters(read_topic(market.settings, market.dlq, until=5, timeout=10))
    assert len(dead) >= 5  # 8000 trades / 1100
    assert all(d.reason and d.raw and d.receive_time_ns > 0 for d in dead)
    assert {d.reason.split(":")[0] for d in dead} >= {"invalid JSON"}


def test_sigterm_flushes_every_tick_and_kcat_with_the_proto_alone_decodes_them(
    market: Market,
    start_exchange: Callable[..., subprocess.Popen[bytes]],
    start_producer: Callable[[], subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    start_exchange("--speed", "max", "--max-trades", "8000")
    producer = start_producer()
    deadline = time.monotonic() + 60
    sent = 0.0
    while time.monotonic() < deadline and sent < 3000:
        with contextlib.suppress(httpx.HTTPError, KeyError):
            sent = _metric(market.producer_metrics_url, "market_producer_ticks_out_total")
        time.sleep(0.1)
    assert _stop(producer) == 0  # mid-stream
    log = (market.logs / "producer.log").read_text()
    stopped = [line for line in log.splitlines() if "stopped:" in line]
    assert stopped, log[-2000:]
    n_sent = int(stopped[-1].split("stopped: ")[1].split(" ticks")[0])
    assert n_sent >= 3000
    ticks = decode_ticks(read_topic(market.settings, market.topic, until=n_sent, timeout=30))
    assert len(ticks) == n_sent  # everything the producer said it sent was flushed before exit

    # A second, independent client: kcat (librdkafka) reads raw values, protoc decodes them
    # knowing nothing but hft/schema/market.proto.
    by_id = {(t.symbol, t.trade_id): t for t in ticks}
    proto = tmp_path / "market.proto"
    proto.write_text((REPO_ROOT / "hft" / "schema" / "market.proto").read_text())
    bootstrap = market.settings.kafka_bootstrap_servers()
    listing = subprocess.run(
        [
            "kcat",
            "-C",
            "-b",
            bootstrap,
            "-t",
            market.topic,
            "-o",
            "beginning",
            "-e",
            "-q",
            "-f",
            "%k %p %o\n",
        ],
        capture_output=True,
        timeout=30,
        check=True,
    )
    firsts: dict[str, tuple[int, int]] = {}
    for line in listing.stdout.decode().splitlines():
        key, part, offset = line.split()
        firsts.setdefault(key, (int(part), int(offset)))
    assert set(firsts) == set(SYMBOLS)
    for sym, (part, offset) in firsts.items():
        raw = subprocess.run(
            [
                "kcat",
                "-C",
                "-b",
                bootstrap,
                "-t",
                market.topic,
                "-p",
                str(part),
                "-o",
                str(offset),
                "-c",
                "1",
                "-e",
                "-q",
                "-f",
                "%s",
            ],
            capture_output=True,
            timeout=30,
            check=True,
        ).stdout
        decoded = subprocess.run(
            [
                sys.executable,
                "-m",
                "grpc_tools.protoc",
                "--decode=hft.market.v1.Tick",
                f"-I{tmp_path}",
                str(proto),
            ],
            input=raw,
            capture_output=True,
            timeout=30,
            check=False,
            cwd=tmp_path,
        )
        assert decoded.returncode == 0, decoded.stderr.decode()
        fields = dict(line.split(": ", 1) for line in decoded.stdout.decode().splitlines())
        assert fields["symbol"] == f'"{sym}"'
        tick = by_id[(sym, int(fields["trade_id"]))]
        assert float(fields["price"]) == tick.price
        assert int(fields["trade_time_ns"]) == tick.trade_time_ns
        assert int(fields["event_time_ns"]) == tick.event_time_ns
        assert int(fields["receive_time_ns"]) == tick.receive_time_ns
        assert fields["source"] == "SOURCE_STREAM"


def test_killed_producer_resumes_from_the_topic_without_loss_or_duplicates(
    market: Market,
    start_exchange: Callable[..., subprocess.Popen[bytes]],
    start_producer: Callable[[], subprocess.Popen[bytes]],
    captured: list[tuple[str, int, int, int]],
) -> None:
    n = 6000
    start_exchange("--speed", "x20", "--max-trades", str(n))  # the market goes on while the producer is down
    first = start_producer()
    deadline = time.monotonic() + 90
    sent = 0.0
    while time.monotonic() < deadline and sent < 1500:
        with contextlib.suppress(httpx.HTTPError, KeyError):
            sent = _metric(market.producer_metrics_url, "market_producer_ticks_out_total")
        time.sleep(0.1)
    first.kill()  # a crash: no flush, whatever was buffered is gone
    first.wait(10)
    time.sleep(1.0)
    start_producer()
    ticks = decode_ticks(read_topic(market.settings, market.topic, until=n, timeout=120, settle_s=3))
    counts = Counter((t.symbol, t.trade_id) for t in ticks)
    assert set(counts) == {(c[0], c[1]) for c in captured[:n]}
    assert max(counts.values()) == 1
    assert any(t.source == Tick.SOURCE_REST_GAP_FILL for t in ticks)  # the downtime came through REST
    assert "resuming after the last delivered trade ids" in (market.logs / "producer.log").read_text()
