"""Fixtures of the fault tests: the session stack, the replay exchange on recorded trades, and the
streamers (+ the Celery worker) under the project's supervisor, which restarts what is killed.

The replay uses symbol names no other test uses (``BTCUSDTB<hex>``...), so counts in the shared
database, topic and Redis never mix with other tests. Trade times are moved to the test's start
("as if live"; docs/bench.md, finding 1).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bench.latency import seed_history
from bench.pipeline import Rig, bench_symbols, metric, replay_trades, write_trade_files
from hft.config import Settings
from hft.devstack.supervisor import Supervisor
from hft.storage import db
from tests.integration.serving.conftest import (  # noqa: F401 - pytest fixtures by import
    API_KEY,
    TEST_MODEL,
    clean_book,
    registered_model,
    serving_settings,
    trading_engine,
)

SUPERVISED = ["market-producer", "tick-ingestor", "feature-calculator", "worker"]
SERVING = ["api", "trading-bot"]
# the bot buys on every closed bar (thresholds 0/0, no cooldown), so intents flow during the faults
SERVING_ENV = {
    "HFT_MODEL_NAME": TEST_MODEL,
    "HFT_API_KEY": API_KEY,
    "HFT_BUY_THRESHOLD": "0",
    "HFT_SELL_THRESHOLD": "0",
    "HFT_COOLDOWN_S": "0",
    "HFT_MAX_POSITION_NOTIONAL": "1e12",
}
HEARTBEATS = {
    "market-producer": "market_producer_heartbeat_timestamp_seconds",
    "tick-ingestor": "tick_ingestor_heartbeat_timestamp_seconds",
    "feature-calculator": "feature_calculator_heartbeat_timestamp_seconds",
}


def wait_until(
    check: Callable[[], bool], what: str, timeout: float = 120, interval: float = 0.3, fail: bool = True
) -> bool:
    """Poll until ``check`` is true; on timeout fail the test naming ``what`` (or return False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    if fail:
        pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
    return False


MINUTE_NS = 60_000_000_000


def closed_buckets(trades: list[Any]) -> set[int]:
    """Open times (ns) of the 1m bars these trades closed: every bucket from the first trade's to the
    one before the last trade's (the last stays open until a later trade or the clock closes it)."""
    first = trades[0].trade_time_ms * 1_000_000
    last = trades[-1].trade_time_ms * 1_000_000
    return set(range(first - first % MINUTE_NS, last - last % MINUTE_NS, MINUTE_NS))


def wait_for_bar_close(st: Streaming, timeout: float = 180) -> None:
    """Wait until a bar was just announced, so a restart falls between two closes."""
    before = st.bars.last_seen
    wait_until(lambda: st.bars.last_seen > before, "a bar to close", timeout=timeout)


def check_end_state(st: Streaming, features_every_bar: bool = False) -> None:
    # every replayed trade stored exactly once
    for sym, trades in st.trades.items():
        ids = st.stored_ids(sym)
        want = [t.trade_id for t in trades]
        assert len(ids) == len(set(ids)), f"{sym}: {len(ids) - len(set(ids))} trades stored more than once"
        missing = sorted(set(want) - set(ids))
        assert not missing, (
            f"{sym}: {len(missing)} of {len(want)} replayed trades not stored, "
            f"first {missing[:10]}\n{st.diagnose('tick-ingestor')}"
        )
        assert len(ids) == len(want)
    # every bar the replay closed was closed by the calculator; each one with features has its row
    with db.connect(st.settings, autocommit=True) as conn:
        rows = {
            (r[0], int(r[1]))
            for r in conn.execute(
                "SELECT symbol, (extract(epoch FROM event_timestamp) * 1e9)::bigint - %s FROM features.bar_features "
                "WHERE symbol = ANY(%s) AND interval = '1m'",
                (MINUTE_NS, st.rig.symbols),
            )
        }
    for sym, trades in st.trades.items():
        want_bars = closed_buckets(trades)
        got = {ot for (s, ot) in st.bars.seen if s == sym}
        assert want_bars <= got, (
            f"{sym}: bars never closed: {sorted(want_bars - got)[:5]}\n{st.diagnose('feature-calculator')}"
        )
        with_features = {ot for (s, ot), has in st.bars.seen.items() if s == sym and has}
        assert {ot for (s, ot) in rows if s == sym} >= with_features, f"{sym}: features rows missing"
        if features_every_bar:  # warmed up from history: every closed bar has its features
            assert with_features >= want_bars, (
                f"{sym}: bars closed without features: {sorted(want_bars - with_features)[:5]}"
            )
    # no order intent filled twice
    with db.connect(st.settings, autocommit=True) as conn:
        twice = conn.execute(
            "SELECT count(*) FROM (SELECT intent_id FROM trading.fills GROUP BY intent_id "
            "HAVING count(*) > 1) x"
        ).fetchone()
    assert twice is not None
    assert twice[0] == 0, f"{twice[0]} order intents filled more than once"


class ClosedBars:
    """Collects the ``hft:bars:closed`` announcements of some symbols as they come (Redis restarts
    wipe the stream, so it is read continuously instead of at the end)."""

    def __init__(self, settings: Settings, symbols: list[str]) -> None:
        self.settings = settings
        self.symbols = set(symbols)
        self.seen: dict[tuple[str, int], int] = {}  # (symbol, open_time_ns) -> has_features
        self.last_seen = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="closed-bars", daemon=True)

    def start(self) -> ClosedBars:
        """Start reading from now on."""
        self._thread.start()
        return self

    def _run(self) -> None:
        import redis

        from hft.features.calculator import CLOSED_STREAM

        last = "$"
        client: Any = None
        while not self._stop.is_set():
            try:
                if client is None:
                    client = redis.Redis.from_url(self.settings.redis_dsn, socket_timeout=2)
                    if last == "$":
                        info = client.xinfo_stream(CLOSED_STREAM) if client.exists(CLOSED_STREAM) else None
                        last = info["last-generated-id"].decode() if info else "0-0"
                got = client.xread({CLOSED_STREAM: last}, block=200, count=1000)
                for _stream, entries in got or []:
                    for entry_id, f in entries:
                        last = entry_id.decode()
                        sym = f[b"symbol"].decode()
                        if sym in self.symbols:
                            self.seen[(sym, int(f[b"open_time_ns"]))] = int(f[b"has_features"])
                            self.last_seen = time.monotonic()
            except (redis.RedisError, OSError):
                client = None
                if last != "$":
                    last = "0-0"  # a restarted Redis starts an empty stream
                time.sleep(0.2)

    def stop(self) -> None:
        """Stop reading."""
        self._stop.set()
        self._thread.join(5)


@dataclass
class Streaming:
    """The running streaming path of one fault test."""

    rig: Rig
    sup: Supervisor
    trades: dict[str, list[Any]]
    bars: ClosedBars
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def settings(self) -> Settings:
        """The test stack's settings."""
        return self.rig.settings

    def pid(self, name: str) -> int:
        """Pid of a supervised process (0 when not running)."""
        out = self.sup._ctl("pid", name).stdout.strip()
        return int(out) if out.isdigit() else 0

    def heartbeat(self, name: str) -> float:
        """The process's loop heartbeat (NaN when its /metrics does not answer)."""
        return metric(self.rig.metrics(name), HEARTBEATS[name])

    def kill(self, name: str, wait_loop: bool = True) -> None:
        """SIGKILL a supervised process and wait until the supervisor restarted it (and, with
        ``wait_loop``, until its loop runs again)."""
        # (it may be restarting already, e.g. the calculator after the Redis restart)
        wait_until(lambda: self.pid(name) != 0, f"{name} to run before the kill", timeout=120)
        old = self.pid(name)
        os.kill(old, signal.SIGKILL)
        wait_until(lambda: self.pid(name) not in (0, old), f"the supervisor to restart {name}", timeout=60)
        if wait_loop and name in HEARTBEATS:
            since = time.time()
            wait_until(lambda: self.heartbeat(name) >= since, f"{name}'s loop to run again", timeout=180)

    def diagnose(self, *names: str, lines: int = 60) -> str:
        """What a failure message needs to be understood from CI's output alone: each process's
        thread stacks (SIGUSR1, hft.logs) and the tail of its log, and Kafka's consumer-group events.
        Never raises: a failure to diagnose must not hide the failure being diagnosed."""
        try:
            return self._diagnose(names, lines)
        except Exception as exc:  # see above
            return f"(no diagnosis: {exc!r})"

    def _diagnose(self, names: tuple[str, ...], lines: int) -> str:
        logs = self.settings.home_dir / "logs"
        for name in names:
            pid = self.pid(name)
            if pid:
                os.kill(pid, signal.SIGUSR1)
        time.sleep(1)
        out = []
        for name in names:
            path = logs / f"{name}.log"
            tail = path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else ["(no log)"]
            out.append(f"--- {name} (pid {self.pid(name)}), last {lines} log lines ---\n" + "\n".join(tail))
        groups = [
            ln
            for path in sorted(logs.glob("kafka*.log"))
            for ln in path.read_text(errors="replace").splitlines()
            if "GroupCoordinator" in ln
        ]
        out.append("--- Kafka: last 40 consumer-group events ---\n" + "\n".join(groups[-40:]))
        return "\n".join(out)

    def faults(self, **values: int) -> dict[str, Any]:
        """POST /control/faults to the replay exchange."""
        return self._post("/control/faults", values)

    def drop(self) -> dict[str, Any]:
        """POST /control/drop: close every WebSocket now."""
        return self._post("/control/drop", {})

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        s = self.settings
        req = urllib.request.Request(
            f"http://{s.bind_host}:{s.port('exchange')}{path}",
            method="POST",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=5) as r:  # our own localhost exchange
            return dict(json.loads(r.read()))

    def api_ready(self) -> bool:
        """Whether the model server's /ready answers 200 (False while it is down or not ready)."""
        s = self.settings
        try:
            with urllib.request.urlopen(f"http://{s.bind_host}:{s.port('api')}/ready", timeout=2) as r:
                return bool(r.status == 200)
        except OSError:  # refused, 503 (HTTPError is an OSError), time-out
            return False

    def intents(self) -> list[tuple[str, str]]:
        """(id, status) of every order intent on the replayed symbols."""
        with db.connect(self.settings, autocommit=True) as conn:
            return [
                (str(r[0]), r[1])
                for r in conn.execute(
                    "SELECT id, status FROM trading.intents WHERE symbol = ANY(%s)", (self.rig.symbols,)
                )
            ]

    def stored_ids(self, symbol: str) -> list[int]:
        """Trade ids in market.ticks for one symbol (with repeats, if any)."""
        with db.connect(self.settings, autocommit=True) as conn:
            return [
                r[0]
                for r in conn.execute(
                    "SELECT trade_id FROM market.ticks WHERE symbol = %s ORDER BY trade_id", (symbol,)
                )
            ]

    def stored_count(self) -> int:
        """Rows in market.ticks for the replayed symbols (0 while the database is down)."""
        import psycopg

        try:
            return self.rig.stored()[0]
        except (psycopg.Error, OSError):  # the database may be restarting: "nothing yet"
            return 0


@pytest.fixture
def streaming(
    stack: Any, stack_settings: Settings, data_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Callable[..., Streaming]]:
    """Start the replay exchange and the supervised streamers on fresh symbols; stop and clean up after."""
    started: list[Streaming] = []

    def start(
        speed: str,
        n_trades: int | None = None,
        names: list[str] | None = None,
        env: dict[str, str] | None = None,
        warm: bool = False,
        rate: float | None = None,
        market_speed: float = 1.0,
    ) -> Streaming:
        """Replay at ``speed``; with the serving processes in ``names`` (or ``warm``), the calculator
        warms up from real 1m klines (re-timed to end where the replay starts) so closed bars have
        features. ``rate``/``market_speed``: evenly spaced trades (see ``replay_trades``)."""
        db.migrate(stack_settings)
        symbols = bench_symbols()
        rig = Rig(stack_settings, symbols, bar_interval="1m")
        start_ms = time.time_ns() // 1_000_000
        trades = replay_trades(
            data_dir, symbols, n_trades, start_ms=start_ms, rate=rate, market_speed=market_speed
        )
        write_trade_files(trades, rig.source_dir)
        if warm or set(SERVING) & set(names or SUPERVISED):
            seed_history(rig, data_dir, start_ms)
        # the supervisor's children inherit its environment: point them at the replay and these symbols
        Supervisor(stack_settings).stop()
        for k, v in rig.env().items():
            if k.startswith("HFT_") or k == "PYTHONUNBUFFERED":
                monkeypatch.setenv(k, v)
        monkeypatch.setenv("HFT_LOG_LEVEL", "INFO")
        for k, v in (env or {}).items():
            monkeypatch.setenv(k, v)
        sup_settings = stack_settings.model_copy(
            update={"market": "replay", "symbols": rig.symbols, "bar_interval": "1m"}
        )
        sup = Supervisor(sup_settings, names=names or SUPERVISED)
        bars = ClosedBars(stack_settings, rig.symbols).start()
        st = Streaming(rig, sup, trades, bars)
        started.append(st)
        rig.start("exchange", "--speed", speed, "--no-loop")
        rig.wait_ready(["exchange"])
        sup.start()
        return st

    yield start
    for st in started:
        st.bars.stop()
        st.sup.stop()
        st.rig.stop_all()
        st.rig.delete_rows()
