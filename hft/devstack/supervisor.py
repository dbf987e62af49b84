"""The application processes of the main job and the supervisor that keeps them running.

Each process is named by its module (``python -m streamers.tick_ingestor``); ``hft`` never
imports the service packages. ``hft up`` writes a supervisord config under ``Settings.home``
and starts supervisord, which restarts any process that crashes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hft.config import REPO_ROOT, Settings
from hft.devstack.host import child_env, pid_alive


@dataclass(frozen=True)
class ProcessSpec:
    """One long-lived application process."""

    name: str
    command: Callable[[Settings], list[str]]
    metrics_port: str | None = None  # key in config.PORT_OFFSETS
    enabled: Callable[[Settings], bool] = lambda s: True
    env: dict[str, str] = field(default_factory=dict)
    stop_wait_s: int = 20


def _py(module: str, *args: str) -> Callable[[Settings], list[str]]:
    return lambda s: [sys.executable, "-m", module, *args]


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


PROCESSES: list[ProcessSpec] = [
    ProcessSpec(
        "exchange",
        lambda s: [
            _bin("hft"),
            "exchange",
            "--host",
            s.bind_host,
            "--port",
            str(s.port("exchange")),
            "--speed",
            s.replay_speed,
            *(["--loop"] if s.replay_loop else []),
        ],
        metrics_port="metrics_exchange",
        enabled=lambda s: s.market == "replay",
    ),
    # restarts an embedded stack service (PostgreSQL, Redis, Kafka, MLflow, Prometheus) that crashed;
    # with every service external (docker-compose: restart policies) there is nothing to watch
    ProcessSpec(
        "stack-watchdog",
        lambda s: [_bin("hft"), "stack", "watch"],
        enabled=lambda s: (
            not (s.postgres_url and s.redis_url and s.kafka_bootstrap and s.mlflow_tracking_uri)
        ),
    ),
    ProcessSpec("market-producer", _py("streamers.market_producer"), "metrics_market_producer"),
    ProcessSpec("tick-ingestor", _py("streamers.tick_ingestor"), "metrics_tick_ingestor"),
    ProcessSpec("feature-calculator", _py("streamers.feature_calculator"), "metrics_feature_calculator"),
    # uvicorn with settings.api_workers workers (api.serve sets up their shared metrics)
    ProcessSpec("api", _py("api.serve"), metrics_port="api"),
    ProcessSpec("trading-bot", _py("streamers.trading_bot"), "metrics_trading_bot"),
    ProcessSpec(
        "worker",
        lambda s: [
            _bin("celery"),
            "-A",
            "workers.app",
            "worker",
            "--loglevel",
            "INFO",
            "--pool",
            "threads",
            "--concurrency",
            "4",
            "-n",
            f"worker-{s.port_base}@%h",
        ],
        metrics_port="metrics_worker",
    ),
    ProcessSpec(
        "beat",
        lambda s: [
            _bin("celery"),
            "-A",
            "workers.app",
            "beat",
            "--loglevel",
            "INFO",
            "--schedule",
            str(s.home_dir / "celerybeat-schedule"),
        ],
    ),
    ProcessSpec("dashboard", _py("dashboard.app"), "dashboard"),
    # Airflow's environment (AIRFLOW_HOME, metadata DB, ports) comes from hft.devstack.airflow; the
    # supervisor stops the whole process group, since standalone's children outlive their parent
    ProcessSpec(
        "airflow",
        lambda s: [_bin("hft"), "airflow", "standalone"],
        enabled=lambda s: s.airflow_enabled,
        stop_wait_s=60,
    ),
]


def scrape_targets(settings: Settings) -> dict[str, int]:
    """Prometheus job name -> port of every process that serves /metrics."""
    # No MLflow job: its /metrics (--expose-prometheus) needs prometheus-flask-exporter, which the
    # lock does not hold; without it the target only ever reports down (404).
    targets = {
        p.name: settings.port(p.metrics_port) for p in PROCESSES if p.metrics_port and p.enabled(settings)
    }
    if not settings.kafka_bootstrap:  # the embedded nodes' JMX exporter agents
        for i in range(1, settings.kafka_brokers + 1):
            targets["kafka" if i == 1 else f"kafka-{i}"] = settings.kafka_metrics_port(i)
    return targets


class Supervisor:
    """supervisord for the application processes, configured under Settings.home."""

    def __init__(self, settings: Settings, names: list[str] | None = None) -> None:
        self.s = settings
        self.dir = settings.home_dir / "supervisor"
        self.conf = self.dir / "supervisord.conf"
        self.names = names

    def specs(self) -> list[ProcessSpec]:
        return [p for p in PROCESSES if p.enabled(self.s) and (self.names is None or p.name in self.names)]

    def write_config(self) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        logs = self.s.home_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        port = self.s.port("supervisor")
        lines = [
            "[unix_http_server]",
            f"file={self.dir / 'supervisor.sock'}",
            "chmod=0700",  # supervisorctl's way in: this account only
            "",
            "[supervisord]",
            f"logfile={logs / 'supervisord.log'}",
            f"pidfile={self.dir / 'supervisord.pid'}",
            "nodaemon=false",
            "minfds=1024",
            "",
            "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
            "",
            "[supervisorctl]",
            f"serverurl=unix://{self.dir / 'supervisor.sock'}",
            "",
            "[inet_http_server]",
            f"port={self.s.bind_host}:{port}",
            f"username={self.s.supervisor_user}",
            f"password={self.s.supervisor_password.get_secret_value()}",
            "",
        ]
        for spec in self.specs():
            # supervisord expands %(...)s in commands: a literal % (celery -n name@%h) must be %%
            cmd = " ".join(_quote(a) for a in spec.command(self.s)).replace("%", "%%")
            env = {
                "PYTHONUNBUFFERED": "1",
                "HFT_HOME": str(self.s.home_dir),
                "HFT_PORT_BASE": str(self.s.port_base),
                **spec.env,
            }
            env_line = ",".join(f'{k}="{v}"' for k, v in env.items())
            lines += [
                f"[program:{spec.name}]",
                f"command={cmd}",
                f"directory={REPO_ROOT}",
                "autostart=true",
                "autorestart=true",
                "startsecs=2",
                "startretries=100",
                "stopsignal=TERM",
                f"stopwaitsecs={spec.stop_wait_s}",
                "stopasgroup=true",
                "killasgroup=true",
                f"stdout_logfile={logs / (spec.name + '.log')}",
                "redirect_stderr=true",
                "stdout_logfile_maxbytes=50MB",
                f"environment={env_line}",
                "",
            ]
        # it holds the web UI's password
        fd = os.open(self.conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("\n".join(lines))
        self.conf.chmod(0o600)
        return self.conf

    def _ctl(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [_bin("supervisorctl"), "-c", str(self.conf), *args], capture_output=True, text=True, check=check
        )

    def running(self) -> bool:
        return (
            self.conf.exists()
            and self._ctl("pid").returncode == 0
            and self._ctl("pid").stdout.strip().isdigit()
        )

    def start(self) -> None:
        """Start supervisord (or reload it with the new config when already running)."""
        self.write_config()
        if self.running():
            self._ctl("update")
            return
        if not shutil.which(_bin("supervisord")):
            raise FileNotFoundError("supervisord missing from the environment (make setup)")
        subprocess.run([_bin("supervisord"), "-c", str(self.conf)], check=True, env=child_env())
        deadline = time.monotonic() + 20
        while not self.running() and time.monotonic() < deadline:
            time.sleep(0.2)

    def _pid(self) -> int | None:
        pidfile = self.dir / "supervisord.pid"
        try:
            text = pidfile.read_text().strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    def stop(self) -> None:
        """Stop every program, then supervisord itself; return once its ports are free."""
        pid = self._pid()
        if self.running():
            self._ctl("shutdown")
        if pid is None:
            return
        # supervisorctl stops answering before supervisord has stopped its programs (each may take
        # its stopwaitsecs) and released its HTTP port: wait for the process itself.
        deadline = time.monotonic() + 90
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.3)
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def status(self) -> str:
        return self._ctl("status").stdout if self.running() else "supervisor not running\n"

    def restart(self, name: str) -> None:
        self._ctl("restart", name)


def _quote(arg: str) -> str:
    return f'"{arg}"' if " " in arg else arg
