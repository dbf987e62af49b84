"""Pipeline throughput: replay exchange (``max``) → market producer → Kafka → feature calculator + tick ingestor.

The real processes (``hft exchange``, ``python -m streamers.market_producer``, ``...tick_ingestor``,
``...feature_calculator``) run on a private stack (PostgreSQL, Redis, the embedded Apache Kafka) under
``<home>/bench-stack`` on ``port_base + 60``, so a running demo is never touched. The trades are
the recorded spot captures repeated the way loop mode repeats them (``hft.market.replay.
expected_trades``: ids and times shifted per pass), written once as archive-format trade files and
replayed by the exchange without ``--loop``, so "trades in" is an exact count: loop mode never ends,
and stopping the producer mid-stream would leave trades on the wire. Trade times are moved to the
run's start ("as if live"), see docs/bench.md (finding 1).

Keys: ``throughput_ticks_per_s`` (trades in / seconds from the first publish until the last tick
is both stored and featured), ``ticks_in`` (the exchange's ``/control/status`` published counts),
``ticks_stored`` (rows in ``market.ticks``), ``ticks_featured`` (the calculator's
``feature_calculator_ticks``), ``lost``; plus per-stage rates and CPU seconds per process.

This module also holds the rig the latency benchmark, the soak and the fault tests reuse.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from hft.config import GENERATED_SECRETS, REPO_ROOT, Settings, load_credentials

STREAMERS = {
    "market-producer": "streamers.market_producer",
    "tick-ingestor": "streamers.tick_ingestor",
    "feature-calculator": "streamers.feature_calculator",
    "trading-bot": "streamers.trading_bot",
}
METRICS_PORTS = {
    "exchange": "metrics_exchange",
    "market-producer": "metrics_market_producer",
    "tick-ingestor": "metrics_tick_ingestor",
    "feature-calculator": "metrics_feature_calculator",
    "trading-bot": "metrics_trading_bot",
    "api": "api",
}
PRIVATE_PORT_SHIFT = 60


# ------------------------------------------------------------------------------------------------
# replay data
# ------------------------------------------------------------------------------------------------


def bench_symbols(tag: str | None = None, base: Iterable[str] = ("BTCUSDT", "ETHUSDT")) -> dict[str, str]:
    """Real symbol -> a symbol name no other run uses (the database and topics are shared)."""
    tag = tag or secrets.token_hex(2).upper()
    return {s: f"{s}B{tag}" for s in base}


def replay_trades(
    data_dir: Path,
    names: dict[str, str],
    n: int | None = None,
    start_ms: int | None = None,
    rate: float | None = None,
    market_speed: float = 1.0,
) -> dict[str, list[Any]]:
    """The recorded spot trades, repeated as loop mode repeats them, renamed; per symbol.

    ``n``: total trades (all symbols; one pass when None). ``start_ms``: move trade and event
    times so the first trade is at this time (pass gaps kept). ``rate``: instead of the recorded
    pacing, space trades evenly at ``rate`` per wall second, market time running
    ``market_speed`` times faster (replay them at ``x{market_speed}``).
    """
    from hft.market.replay import expected_trades, load_source

    timeline = load_source(data_dir, list(names))
    base = len(timeline.trades)
    passes = 1 if n is None else max(1, math.ceil(n / base))
    trades = expected_trades(timeline, passes)[: n or None]
    first = trades[0].trade_time_ms
    shift = 0 if start_ms is None else start_ms - first
    out: dict[str, list[Any]] = {}
    for i, t in enumerate(trades):
        if rate is not None:
            tt = (start_ms or first) + int(i * 1000.0 * market_speed / rate)
            moved = replace(t, symbol=names[t.symbol], trade_time_ms=tt, event_time_ms=tt)
        else:
            moved = replace(
                t,
                symbol=names[t.symbol],
                trade_time_ms=t.trade_time_ms + shift,
                event_time_ms=t.event_time_ms + shift,
            )
        out.setdefault(moved.symbol, []).append(moved)
    return out


def write_trade_files(trades: dict[str, list[Any]], directory: Path) -> list[Path]:
    """Write each symbol's trades as a Binance archive trade file (what ``hft exchange --source`` reads)."""
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*.csv"):
        old.unlink()
    paths = []
    for sym, rows in trades.items():
        p = directory / f"replay_{sym}_trades.csv"
        with p.open("w") as f:
            for t in rows:
                quote = float(t.price) * float(t.quantity)
                f.write(
                    f"{t.trade_id},{t.price},{t.quantity},{quote:.8f},{t.trade_time_ms},"
                    f"{'true' if t.buyer_is_maker else 'false'},{'true' if t.best_match else 'false'}\n"
                )
        paths.append(p)
    return paths


# ------------------------------------------------------------------------------------------------
# processes and their metrics
# ------------------------------------------------------------------------------------------------


def scrape(port: int, host: str = "127.0.0.1", timeout: float = 2.0) -> dict[str, float]:
    """Prometheus text of one /metrics as ``{name{labels}: value}`` (empty when it does not answer)."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=timeout) as r:
            text = r.read().decode()
    except OSError:
        return {}
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        with contextlib.suppress(ValueError):
            out[key] = float(value)
    return out


def metric(values: dict[str, float], name: str) -> float:
    """A counter/gauge by name (``_total`` suffix or not; labels summed)."""
    total, found = 0.0, False
    for key, v in values.items():
        bare = key.split("{", 1)[0]
        if bare in (name, f"{name}_total"):
            total += v
            found = True
    return total if found else float("nan")


def histogram_quantiles(
    values: dict[str, float],
    name: str,
    qs: Iterable[float] = (0.5, 0.95, 0.99),
    before: dict[str, float] | None = None,
) -> dict[str, float]:
    """Quantiles (linear inside a bucket, as Prometheus' histogram_quantile) of ``name``, in the unit
    of its buckets; ``before``: an earlier scrape to subtract (the quantiles of the window)."""
    buckets: list[tuple[float, float]] = []
    for key, v in values.items():
        if key.startswith(f"{name}_bucket{{"):
            le = key.split('le="', 1)[1].split('"', 1)[0]
            prev = (before or {}).get(key, 0.0)
            buckets.append((math.inf if le == "+Inf" else float(le), v - prev))
    buckets.sort()
    if not buckets or buckets[-1][1] <= 0:
        return {f"p{round(q * 100)}": float("nan") for q in qs} | {"n": 0}
    total = buckets[-1][1]
    out: dict[str, float] = {"n": total}
    for q in qs:
        rank = q * total
        lo_bound, lo_count = 0.0, 0.0
        for bound, count in buckets:
            if count >= rank:
                if math.isinf(bound):
                    value = lo_bound  # beyond the last finite bucket: its bound is all we know
                else:
                    frac = (rank - lo_count) / (count - lo_count) if count > lo_count else 1.0
                    value = lo_bound + (bound - lo_bound) * frac
                out[f"p{round(q * 100)}"] = value
                break
            lo_bound, lo_count = bound, count
    return out


@dataclass
class Proc:
    """One child process in its own process group, logging to a file."""

    name: str
    cmd: list[str]
    env: dict[str, str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        """Start it."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        out = self.log.open("ab")
        self.popen = subprocess.Popen(
            self.cmd,
            cwd=REPO_ROOT,
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        out.close()
        return self

    @property
    def pid(self) -> int:
        """Its pid."""
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        """Whether it still runs."""
        return self.popen is not None and self.popen.poll() is None

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM the group, wait, SIGKILL when it does not exit."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(10)
        return self.popen.returncode


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its children (0 when gone)."""
    import psutil

    try:
        p = psutil.Process(pid)
        total = sum(p.cpu_times()[:2])
        for c in p.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                total += sum(c.cpu_times()[:2])
        return float(total)
    except psutil.Error:
        return 0.0


@dataclass
class Rig:
    """A private stack plus the streaming processes on replayed data (benchmarks, soak, fault tests)."""

    settings: Settings  # the private stack's settings
    names: dict[str, str]  # real symbol -> replayed symbol
    bar_interval: str = "15m"
    extra_env: dict[str, str] = field(default_factory=dict)
    procs: dict[str, Proc] = field(default_factory=dict)

    @classmethod
    def private(cls, base: Settings, names: dict[str, str], **kw: Any) -> Rig:
        """A rig whose stack lives under ``<home>/bench-stack`` on ``port_base + 60``."""
        home = base.home_dir / "bench-stack"
        # that home's own generated passwords: its children read them from there (a copy of the
        # base settings would carry the base home's and the private PostgreSQL would refuse them)
        own = {k: SecretStr(v) for k, v in load_credentials(home).items() if k in GENERATED_SECRETS}
        s = base.model_copy(update={"home": home, "port_base": base.port_base + PRIVATE_PORT_SHIFT, **own})
        return cls(s, names, **kw)

    @property
    def symbols(self) -> list[str]:
        """The replayed symbol names."""
        return list(self.names.values())

    @property
    def source_dir(self) -> Path:
        """Where the replay's trade files go."""
        return self.settings.home_dir / "replay-source"

    def env(self, **more: str) -> dict[str, str]:
        """Environment of every child: the private stack, replay market, bench symbols."""
        s = self.settings
        return {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "HFT_HOME": str(s.home_dir),
            "HFT_PORT_BASE": str(s.port_base),
            "HFT_MARKET": "replay",
            "HFT_SYMBOLS": json.dumps(self.symbols),
            "HFT_BAR_INTERVAL": self.bar_interval,
            "HFT_DATA_DIR": str(self.source_dir),
            "HFT_LOG_LEVEL": "WARNING",
            **self.extra_env,
            **more,
        }

    def up(self, fresh_topics: bool = True) -> None:
        """Start PostgreSQL, Redis and Kafka (with empty market topics by default); migrate."""
        from hft.devstack.stack import Stack
        from hft.storage import db

        st = Stack(self.settings)
        st.up(["postgres", "redis", "kafka"])
        if fresh_topics:
            recreate_topics(self.settings)
        db.migrate(self.settings)

    def down(self) -> None:
        """Stop the processes and the private stack."""
        from hft.devstack.stack import Stack

        self.stop_all()
        Stack(self.settings).down()

    def start(self, name: str, *args: str) -> Proc:
        """Start ``exchange`` (args: hft exchange options), ``api`` (uvicorn, one worker) or a streamer by name."""
        s = self.settings
        logs = s.home_dir / "logs"
        if name == "exchange":
            cmd = [
                str(Path(sys.executable).with_name("hft")),
                "exchange",
                "--host",
                s.bind_host,
                "--port",
                str(s.port("exchange")),
                "--metrics-port",
                str(s.port("metrics_exchange")),
                "--source",
                str(self.source_dir),
                *args,
            ]
        elif name == "api":
            cmd = [
                str(Path(sys.executable).with_name("uvicorn")),
                "api.app:create_app",
                "--factory",
                "--host",
                s.bind_host,
                "--port",
                str(s.port("api")),
                "--workers",
                "1",
                "--no-access-log",
                "--log-level",
                "warning",
                *args,
            ]
        else:
            cmd = [sys.executable, "-m", STREAMERS[name], *args]
        p = Proc(name, cmd, self.env(), logs / f"{name}.log").start()
        self.procs[name] = p
        return p

    def stop_all(self) -> None:
        """SIGTERM every process (producer first, so it flushes; exchange last)."""
        order = ["market-producer", "tick-ingestor", "feature-calculator", "trading-bot", "api"]
        for name in order + [n for n in self.procs if n not in order]:
            if name in self.procs:
                self.procs[name].stop()

    def metrics(self, name: str) -> dict[str, float]:
        """Scrape one process's /metrics."""
        return scrape(self.settings.port(METRICS_PORTS[name]), self.settings.bind_host)

    def exchange_status(self) -> dict[str, Any]:
        """``GET /control/status`` of the replay exchange (empty when it does not answer)."""
        url = f"http://{self.settings.bind_host}:{self.settings.port('exchange')}/control/status"
        try:
            with urllib.request.urlopen(url, timeout=3) as r:
                return dict(json.loads(r.read()))
        except OSError:
            return {}

    def api_ready(self) -> tuple[bool, str]:
        """``GET /ready`` of the model server: (ready, body or error)."""
        url = f"http://{self.settings.bind_host}:{self.settings.port('api')}/ready"
        try:
            with urllib.request.urlopen(url, timeout=3) as r:
                return r.status == 200, r.read().decode()
        except urllib.error.HTTPError as exc:
            return False, exc.read().decode(errors="replace")
        except OSError as exc:
            return False, str(exc)

    def published(self) -> int:
        """Trades the exchange published so far (all symbols)."""
        st = self.exchange_status()
        return sum(int(v["count"]) for v in st.get("published", {}).values())

    def stored(self) -> tuple[int, int]:
        """(rows, distinct (symbol, trade_id)) in market.ticks for the replayed symbols."""
        from hft.storage import db

        with db.connect(self.settings, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*), count(DISTINCT (symbol, trade_id)) FROM market.ticks "
                "WHERE symbol = ANY(%s)",
                (self.symbols,),
            ).fetchone()
        assert row is not None
        return int(row[0]), int(row[1])

    def delete_rows(self) -> None:
        """Remove what this run wrote (ticks, bars, features, the bot's intents of the replayed symbols)."""
        from hft.storage import db

        with db.connect(self.settings, autocommit=True) as conn:
            for table in (
                "market.ticks",
                "market.bars",
                "features.bar_features",
                "trading.fills",
                "trading.orders",
                "trading.intents",
                "trading.positions",
            ):
                with contextlib.suppress(Exception):
                    conn.execute(f"DELETE FROM {table} WHERE symbol = ANY(%s)", (self.symbols,))

    def vacuum(self) -> None:
        """VACUUM ANALYZE the tables a run fills: an earlier run's million deleted rows otherwise
        wait for autovacuum, which then competes with the next run for the two cores."""
        from hft.storage import db

        with db.connect(self.settings, autocommit=True) as conn:
            for table in ("market.ticks", "market.bars", "features.bar_features"):
                conn.execute(f"VACUUM ANALYZE {table}")

    def wait_ready(self, names: Iterable[str], timeout: float = 180) -> None:
        """Wait until each named process runs its loop (exchange: answers /control/status)."""
        deadline = time.monotonic() + timeout
        beats = {
            "market-producer": "market_producer_heartbeat_timestamp_seconds",
            "tick-ingestor": "tick_ingestor_heartbeat_timestamp_seconds",
            "feature-calculator": "feature_calculator_heartbeat_timestamp_seconds",
            "trading-bot": "trading_bot_heartbeat_timestamp_seconds",
        }

        def ready(name: str) -> bool:
            if name == "exchange":
                return bool(self.exchange_status())
            if name == "api":
                return self.api_ready()[0]
            # /metrics answers before the consumer exists; the loop's heartbeat means it polls
            return metric(self.metrics(name), beats[name]) > 0

        for name in names:
            while not ready(name):
                if not self.procs[name].alive():
                    raise RuntimeError(f"{name} exited: see {self.procs[name].log}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name} not serving /metrics after {timeout:.0f}s")
                time.sleep(0.3)


def recreate_topics(settings: Settings, timeout: float = 60) -> None:
    """Delete the market topics and every consumer group of the private stack, and create the
    topics anew.

    The groups go too: Kafka 4.1 kept a group's committed offsets on a deleted topic, so the next
    run's ingestor resumed at the last run's offsets inside the new topic, skipped the ticks
    before them and the ingest bench waited for rows that never came (2026-12-06, 2 runs of 3).
    """
    from confluent_kafka.admin import AdminClient

    from hft.bus.topics import ensure_topics

    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers()})
    _delete_groups(admin, timeout)
    names = [settings.topic_ticks, settings.topic_dlq]
    existing = [t for t in names if t in admin.list_topics(timeout=10).topics]
    if existing:
        for fut in admin.delete_topics(existing, operation_timeout=30).values():
            fut.result()
        wait_for(lambda: not set(names) & set(admin.list_topics(timeout=10).topics), timeout, interval=0.2)
    ensure_topics(settings, timeout=timeout)


def _delete_groups(admin: Any, timeout: float) -> None:
    """Delete every consumer group (nothing of the rig runs now, so each is empty), retrying while
    a broker that just started is still loading its group coordinator (it then lists no group)."""
    from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException

    deadline = time.monotonic() + timeout
    while True:
        try:
            groups = [g.group_id for g in admin.list_consumer_groups(request_timeout=10).result().valid]
            for fut in (admin.delete_consumer_groups(groups, request_timeout=30) if groups else {}).values():
                fut.result()
            # a loading coordinator lists nothing: ask for one known group's offsets to be sure
            admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions("tick-ingestor")])[
                "tick-ingestor"
            ].result()
            if not groups:
                return
        except KafkaException as exc:
            if time.monotonic() > deadline:
                raise
            print(f"consumer groups not deleted yet ({exc}); retrying", flush=True)
            time.sleep(1.0)


def wait_for(check: Callable[[], bool], timeout: float, interval: float = 0.5) -> bool:
    """Poll ``check`` until true (True) or the timeout (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return False


# ------------------------------------------------------------------------------------------------
# the benchmark
# ------------------------------------------------------------------------------------------------


def run(settings: Settings, quick: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """Replay N trades at max speed through the real processes; throughput and loss."""
    n = 50_000 if quick else int(os.environ.get("HFT_BENCH_PIPELINE_TRADES", "1000000"))
    rig = Rig.private(settings, bench_symbols())
    params: dict[str, Any] = {
        "trades": n,
        "speed": "max",
        "symbols": rig.symbols,
        "bar_interval": rig.bar_interval,
        "source": "spot captures 2024-08-08/09 BTCUSDT+ETHUSDT, repeated as loop mode does",
        "stack": str(rig.settings.home_dir),
        "port_base": rig.settings.port_base,
        "producer_linger_ms": settings.kafka_linger_ms,
        "producer_compression": settings.kafka_compression,
    }
    print(f"   preparing {n:,} trades for {rig.symbols}", flush=True)
    write_trade_files(
        replay_trades(settings.data_dir, rig.names, n, start_ms=time.time_ns() // 1_000_000), rig.source_dir
    )
    rig.up()
    rig.vacuum()
    try:
        return params, _measure(rig, n)
    finally:
        rig.stop_all()
        rig.delete_rows()
        rig.down()


def _measure(rig: Rig, n: int) -> dict[str, Any]:
    rig.start("tick-ingestor")
    rig.start("feature-calculator")
    rig.start("exchange", "--speed", "max", "--no-loop")
    rig.wait_ready(["tick-ingestor", "feature-calculator", "exchange"])
    cpu0 = {k: cpu_seconds(p.pid) for k, p in rig.procs.items()}
    rig.start("market-producer")
    profiles = Profiles(rig, float(os.environ.get("HFT_BENCH_PROFILE_S", "0")), delay_s=15.0).start()
    samples: list[dict[str, float]] = []
    t_first = t_done = None
    t0 = time.monotonic()
    stall_since = time.monotonic()
    last_progress = -1.0
    while True:
        now = time.monotonic()
        pub = rig.published()
        prod = metric(rig.metrics("market-producer"), "market_producer_ticks_out")
        ing = metric(rig.metrics("tick-ingestor"), "tick_ingestor_rows_written")
        feat = metric(rig.metrics("feature-calculator"), "feature_calculator_ticks")
        samples.append(
            {"t": round(now - t0, 2), "published": pub, "produced": prod, "stored": ing, "featured": feat}
        )
        if t_first is None and pub > 0:
            t_first = now
        progress = sum(x for x in (pub, prod, ing, feat) if not math.isnan(x))
        if progress > last_progress:
            last_progress, stall_since = progress, now
        if pub >= n and ing >= n and feat >= n:
            t_done = now
            break
        if now - stall_since > 90:
            print(f"   stalled: {samples[-1]}", flush=True)
            break
        if len(samples) % 20 == 0:
            print(f"   {samples[-1]}", flush=True)
        time.sleep(0.5)
    cpu = {k: round(cpu_seconds(p.pid) - cpu0.get(k, 0.0), 1) for k, p in rig.procs.items()}
    profile = profiles.result() if profiles is not None else None
    status = rig.exchange_status()
    ticks_in = sum(int(v["count"]) for v in status.get("published", {}).values())
    time.sleep(2)  # let a last batch commit before counting rows
    rows, distinct = rig.stored()
    featured = int(metric(rig.metrics("feature-calculator"), "feature_calculator_ticks"))
    produced = int(metric(rig.metrics("market-producer"), "market_producer_ticks_out"))
    end = t_done if t_done is not None else time.monotonic()
    seconds = end - (t_first or t0)
    return {
        "throughput_ticks_per_s": round(min(ticks_in, rows, featured) / seconds, 1) if seconds > 0 else 0.0,
        "ticks_in": ticks_in,
        "ticks_produced": produced,
        "ticks_stored": rows,
        "ticks_stored_distinct": distinct,
        "ticks_featured": featured,
        "lost": max(ticks_in - distinct, ticks_in - featured, 0),
        "duplicates": rows - distinct,
        "seconds": round(seconds, 2),
        "completed": t_done is not None,
        "cpu_seconds": cpu,
        "cpu_us_per_tick": {k: round(v * 1e6 / max(ticks_in, 1), 1) for k, v in cpu.items()},
        # what two idle cores could do at these per-tick CPU costs (every process busy in parallel)
        "cpu_bound_ticks_per_s_on_2_cores": round(2 * max(ticks_in, 1) / max(sum(cpu.values()), 1e-9), 0),
        "profile_top_frames": profile,
        "stage_rates_ticks_per_s": _stage_rates(samples),
        "samples": samples[:: max(1, len(samples) // 60)],
    }


class Profiles:
    """py-spy (``--gil``: only the thread running Python) on every process for a while, mid-run.

    Off unless ``HFT_BENCH_PROFILE_S`` > 0 and py-spy is found (PATH, ``HFT_PY_SPY``); py-spy is a
    profiling tool, not a project dependency: ``pip install --target /tmp/pyspy py-spy``.
    """

    def __init__(self, rig: Rig, seconds: float, delay_s: float = 15.0) -> None:
        import shutil

        self.rig, self.seconds, self.delay_s = rig, seconds, delay_s
        self.binary = os.environ.get("HFT_PY_SPY") or shutil.which("py-spy")
        self.thread: Any = None
        self.out: dict[str, list[str]] = {}

    def start(self) -> Profiles | None:
        """Start sampling in the background (None when off)."""
        import threading

        if self.seconds <= 0 or not self.binary:
            return None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self) -> None:
        time.sleep(self.delay_s)
        d = self.rig.settings.home_dir / "profiles"
        d.mkdir(parents=True, exist_ok=True)
        runs = {
            name: subprocess.Popen(
                [
                    str(self.binary),
                    "record",
                    "--gil",
                    "-r",
                    "100",
                    "-d",
                    str(int(self.seconds)),
                    "-f",
                    "raw",
                    "-o",
                    str(d / f"{name}.txt"),
                    "-p",
                    str(p.pid),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for name, p in self.rig.procs.items()
        }
        for name, proc in runs.items():
            proc.wait()
            self.out[name] = top_frames(d / f"{name}.txt")

    def result(self) -> dict[str, list[str]]:
        """Top inclusive frames per process (waits for the sampling to end)."""
        if self.thread is not None:
            self.thread.join(self.seconds + self.delay_s + 30)
        return self.out


def top_frames(path: Path, n: int = 12) -> list[str]:
    """The frames (our code and libraries) with the most inclusive samples in a py-spy raw file."""
    from collections import Counter

    incl: Counter[str] = Counter()
    total = 0
    if not path.exists():
        return []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        total += int(count)
        for fr in set(stack.split(";")):
            name = fr.split(" (", 1)[0]
            where = fr.split(" (", 1)[1].rstrip(")") if " (" in fr else ""
            where = where.split("site-packages/")[-1].split("python3.11/")[-1]
            incl[f"{name} ({where})"] += int(count)
    skip = (
        "<module>",
        "_run_code",
        "_run_module_as_main",
        "run (",
        "main (",
        "Thread.",
        "Runner.",
        "BaseEventLoop.",
    )
    rows = [(k, c) for k, c in incl.most_common() if not k.startswith(skip)]
    return [f"{100 * c / total:.0f}% {k}" for k, c in rows[:n]] if total else []


def _stage_rates(samples: list[dict[str, float]]) -> dict[str, float]:
    """Average rate of each stage over the span in which it moved."""
    out = {}
    for key in ("published", "produced", "stored", "featured"):
        moving = [s for s in samples if not math.isnan(s[key]) and s[key] > 0]
        if len(moving) >= 2 and moving[-1]["t"] > moving[0]["t"]:
            out[key] = round((moving[-1][key] - moving[0][key]) / (moving[-1]["t"] - moving[0]["t"]), 1)
    return out
