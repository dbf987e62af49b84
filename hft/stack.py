"""The embedded local stack: PostgreSQL, Redis, Apache Kafka (KRaft), MLflow, Prometheus.

Everything runs as the invoking user (PostgreSQL as ``postgres`` when started by root, since
``initdb`` refuses root) under ``Settings.home`` on ports derived from ``HFT_PORT_BASE``.
``up`` is idempotent, ``down`` stops only what ``up`` started (it keeps pid files), and each
part has a readiness check with a timeout. External services named in the settings
(``HFT_POSTGRES_URL``, ``HFT_REDIS_URL``, ``HFT_KAFKA_BOOTSTRAP``, ``HFT_MLFLOW_TRACKING_URI``)
are used instead of starting our own.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from hft.bus.topics import ensure_topics
from hft.config import Settings
from hft.devstack.host import find_binary, pid_alive, port_open
from hft.devstack.kafka import KafkaCluster

log = logging.getLogger(__name__)

PG_BIN_DIRS = [
    Path("/usr/lib/postgresql/15/bin"),
    Path("/usr/lib/postgresql/16/bin"),
    Path("/usr/lib/postgresql/17/bin"),
]
DATABASES = ("hft", "mlflow", "airflow", "optuna")


@dataclass(frozen=True)
class PartStatus:
    """Health of one part of the stack."""

    name: str
    url: str
    healthy: bool
    detail: str = ""
    managed: bool = True  # False: an external service named in the settings


# --------------------------------------------------------------------------------------------
# small process helpers
# --------------------------------------------------------------------------------------------


def _is_root() -> bool:
    return os.geteuid() == 0


def _http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - our own localhost URL
            return 200 <= int(resp.status) < 300
    except (OSError, ValueError):
        return False


def wait_for(check: Callable[[], bool], what: str, timeout: float, interval: float = 0.2) -> None:
    """Poll ``check`` until it is true or raise TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise TimeoutError(f"{what} not ready after {timeout:.0f}s")


# Importing feast (which mlflow's plugin discovery can do) points prometheus_client at a temporary
# multiprocess directory through these variables and deletes it at exit; children that inherit
# them crash on their first metric. Our processes keep their metrics in memory.
_INHERITED_ONLY_BY_IMPORTERS = ("PROMETHEUS_MULTIPROC_DIR", "PROMETHEUS_MULTIPROCESS_DIR")


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a long-lived child: ours, minus what a library set for itself, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in _INHERITED_ONLY_BY_IMPORTERS}
    env.update(extra or {})
    return env


class Stack:
    """Start, stop and inspect the embedded services for one Settings."""

    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.home = settings.home_dir
        self.host = settings.bind_host

    # ---- paths -------------------------------------------------------------------------------
    def _dir(self, *parts: str) -> Path:
        p = self.home.joinpath(*parts)
        p.mkdir(parents=True, exist_ok=True)
        return p

    def pidfile(self, name: str) -> Path:
        return self._dir("pids") / f"{name}.pid"

    def logfile(self, name: str) -> Path:
        return self._dir("logs") / f"{name}.log"

    def _spawn(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> int:
        """Start a long-lived child in its own session, logging to .hft/logs, and record its pid."""
        out = self.logfile(name).open("ab")
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=child_env(env),
            start_new_session=True,
        )
        self.pidfile(name).write_text(str(proc.pid))
        return proc.pid

    def _stop_pid(self, name: str, timeout: float = 20.0) -> bool:
        pf = self.pidfile(name)
        if not pf.exists():
            return False
        pid = int(pf.read_text().strip() or 0)
        if pid and pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if pid_alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
        pf.unlink(missing_ok=True)
        return True

    def _managed_alive(self, name: str) -> bool:
        pf = self.pidfile(name)
        if not pf.exists():
            return False
        text = pf.read_text().strip()
        return bool(text) and pid_alive(int(text))

    # ---- PostgreSQL --------------------------------------------------------------------------
    def _as_postgres(self, cmd: list[str]) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *cmd] if _is_root() else cmd

    def _pg_ready(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(
                self.s.database_url("postgres", driver="postgresql"), connect_timeout=2
            ) as c:
                c.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False

    def start_postgres(self, timeout: float = 60) -> None:
        if self.s.postgres_url:
            return
        if self.s.timescale:
            from hft import stack_timescale

            stack_timescale.start(self, timeout)
        else:
            self._start_plain_postgres(timeout)
        self._create_databases()

    def _start_plain_postgres(self, timeout: float) -> None:
        port = self.s.port("postgres")
        data = self.home / "pg"
        sock = self._dir("pg-sock")
        if port_open(self.host, port) and self._pg_ready():
            return
        initdb = find_binary("initdb", PG_BIN_DIRS, "install PostgreSQL (apt-get install postgresql)")
        pg_ctl = find_binary("pg_ctl", PG_BIN_DIRS, "install PostgreSQL (apt-get install postgresql)")
        if _is_root():
            # postgres must be able to reach its data directory through our tree
            for p in [self.home, *self.home.parents]:
                if p == Path("/"):
                    break
                mode = p.stat().st_mode
                if not mode & 0o001:
                    p.chmod(mode | 0o001)
        if not (data / "PG_VERSION").exists():
            data.mkdir(parents=True, exist_ok=True)
            if _is_root():
                shutil.chown(data, "postgres", "postgres")
            subprocess.run(
                self._as_postgres(
                    [
                        initdb,
                        "-D",
                        str(data),
                        "-U",
                        "postgres",
                        "--auth=trust",
                        "-E",
                        "UTF8",
                        "--locale=C.UTF-8",
                        "--no-instructions",
                    ]
                ),
                check=True,
                capture_output=True,
            )
        if _is_root():
            shutil.chown(sock, "postgres", "postgres")
        opts = (
            f"-p {port} -k {sock} -c listen_addresses={self.host} -c max_connections=200 "
            "-c shared_buffers=256MB -c synchronous_commit=on -c fsync=on"
        )
        logf = self.logfile("postgres")
        if _is_root() and logf.exists():
            shutil.chown(logf, "postgres", "postgres")
        elif _is_root():
            logf.touch()
            shutil.chown(logf, "postgres", "postgres")
        subprocess.run(
            self._as_postgres(
                [pg_ctl, "-D", str(data), "-l", str(logf), "-o", opts, "-w", "-t", str(int(timeout)), "start"]
            ),
            check=True,
            capture_output=True,
        )
        (self.pidfile("postgres")).write_text((data / "postmaster.pid").read_text().splitlines()[0])
        wait_for(self._pg_ready, "PostgreSQL", timeout)

    def _create_databases(self) -> None:
        import psycopg

        with psycopg.connect(self.s.database_url("postgres", driver="postgresql"), autocommit=True) as c:
            existing = {r[0] for r in c.execute("SELECT datname FROM pg_database")}
            for db in DATABASES:
                name = self.s.postgres_db if db == "hft" else db
                if name not in existing:
                    c.execute(f'CREATE DATABASE "{name}"')

    def stop_postgres(self) -> None:
        if self.s.postgres_url:
            return
        if self.s.timescale:
            from hft import stack_timescale

            stack_timescale.stop(self)
            return
        data = self.home / "pg"
        if not (data / "postmaster.pid").exists():
            self.pidfile("postgres").unlink(missing_ok=True)
            return
        pg_ctl = find_binary("pg_ctl", PG_BIN_DIRS)
        subprocess.run(
            self._as_postgres([pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"]),
            check=False,
            capture_output=True,
        )
        self.pidfile("postgres").unlink(missing_ok=True)

    # ---- Redis ------------------------------------------------------------------------------
    def _redis_ready(self) -> bool:
        import redis

        try:
            return bool(redis.Redis.from_url(self.s.redis_dsn, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def start_redis(self, timeout: float = 20) -> None:
        if self.s.redis_url or self._redis_ready():
            return
        binary = find_binary("redis-server", hint="install Redis (apt-get install redis-server)")
        d = self._dir("redis")
        subprocess.run(
            [
                binary,
                "--port",
                str(self.s.port("redis")),
                "--bind",
                self.host,
                "--dir",
                str(d),
                "--daemonize",
                "yes",
                "--pidfile",
                str(self.pidfile("redis")),
                "--logfile",
                str(self.logfile("redis")),
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
            ],
            check=True,
            capture_output=True,
        )
        wait_for(self._redis_ready, "Redis", timeout)

    def stop_redis(self) -> None:
        if self.s.redis_url:
            return
        self._stop_pid("redis")

    # ---- Apache Kafka (KRaft) ------------------------------------------------------------------
    @property
    def kafka(self) -> KafkaCluster:
        return KafkaCluster(self.s)

    def start_kafka(self, timeout: float = 90) -> None:
        if self.s.kafka_bootstrap:
            ensure_topics(self.s, timeout=timeout)  # an external cluster gets the same topics
            return
        self.kafka.start(timeout)

    def stop_kafka(self) -> None:
        if not self.s.kafka_bootstrap:
            self.kafka.stop()

    # ---- MLflow -----------------------------------------------------------------------------
    def _mlflow_ready(self) -> bool:
        return _http_ok(f"{self.s.mlflow_uri}/health")

    def start_mlflow(self, timeout: float = 120) -> None:
        if self.s.mlflow_tracking_uri or self._mlflow_ready():
            return
        binary = Path(sys.executable).with_name("mlflow")
        artifacts = self._dir("mlflow", "artifacts")
        self._spawn(
            "mlflow",
            [
                str(binary),
                "server",
                "--backend-store-uri",
                self.s.database_url("mlflow", driver="postgresql+psycopg2"),
                "--artifacts-destination",
                str(artifacts),
                "--host",
                self.host,
                "--port",
                str(self.s.port("mlflow")),
                "--workers",
                "1",
            ],
            env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        )
        wait_for(self._mlflow_ready, "MLflow", timeout, interval=0.5)

    def stop_mlflow(self) -> None:
        if not self.s.mlflow_tracking_uri:
            self._stop_pid("mlflow")

    # ---- Prometheus -------------------------------------------------------------------------
    def prometheus_available(self) -> bool:
        return shutil.which("prometheus") is not None

    def _prometheus_url(self) -> str:
        return f"http://{self.host}:{self.s.port('prometheus')}"

    def _prometheus_ready(self) -> bool:
        return _http_ok(f"{self._prometheus_url()}/-/ready")

    def write_prometheus_config(self) -> Path:
        from hft.processes import scrape_targets

        d = self._dir("prometheus")
        lines = ["global:", "  scrape_interval: 5s", "  evaluation_interval: 5s", "scrape_configs:"]
        for job, port in scrape_targets(self.s).items():
            lines += [
                f"  - job_name: {job}",
                "    static_configs:",
                f"      - targets: ['{self.host}:{port}']",
            ]
        path = d / "prometheus.yml"
        path.write_text("\n".join(lines) + "\n")
        return path

    def start_prometheus(self, timeout: float = 30) -> None:
        if not self.prometheus_available() or self._prometheus_ready():
            return
        cfg = self.write_prometheus_config()
        self._spawn(
            "prometheus",
            [
                "prometheus",
                f"--config.file={cfg}",
                f"--storage.tsdb.path={self._dir('prometheus', 'data')}",
                f"--web.listen-address={self.host}:{self.s.port('prometheus')}",
                "--storage.tsdb.retention.time=2d",
            ],
        )
        wait_for(self._prometheus_ready, "Prometheus", timeout)

    def stop_prometheus(self) -> None:
        self._stop_pid("prometheus")

    # ---- the whole stack --------------------------------------------------------------------
    def up(self, parts: Iterable[str] | None = None, progress: Callable[[str], None] | None = None) -> None:
        """Start every part (or the named ones) that is not already running."""
        order = ["postgres", "redis", "kafka", "mlflow", "prometheus"]
        wanted = list(parts) if parts else order
        for name in order:
            if name in wanted:
                if progress:
                    progress(name)
                getattr(self, f"start_{name}")()

    def down(self) -> None:
        """Stop every part that ``up`` started, in reverse order."""
        for name in ["prometheus", "mlflow", "kafka", "redis", "postgres"]:
            try:
                getattr(self, f"stop_{name}")()
            except (OSError, subprocess.SubprocessError) as exc:
                log.warning("stopping %s failed: %s", name, exc)

    def status(self) -> list[PartStatus]:
        """Health and URL of each part."""
        s = self.s
        out = [
            PartStatus(
                "postgres",
                s.database_url(),
                self._pg_ready(),
                "TimescaleDB" if s.timescale else "PostgreSQL",
                managed=not s.postgres_url,
            ),
            PartStatus("redis", s.redis_dsn, self._redis_ready(), managed=not s.redis_url),
        ]
        boot = s.kafka_bootstrap_servers()
        if s.kafka_bootstrap:
            out.append(
                PartStatus("kafka", boot, port_open(*_split_hostport(boot)), "external", managed=False)
            )
        else:
            cluster = self.kafka
            out.append(PartStatus("kafka", boot, cluster.healthy(), cluster.detail()))
        out.append(
            PartStatus("mlflow", s.mlflow_uri, self._mlflow_ready(), managed=not s.mlflow_tracking_uri)
        )
        if self.prometheus_available():
            out.append(PartStatus("prometheus", self._prometheus_url(), self._prometheus_ready()))
        else:
            out.append(PartStatus("prometheus", "-", False, "not installed (apt-get install prometheus)"))
        return out


def _split_hostport(bootstrap: str) -> tuple[str, int]:
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    return host, int(port)
