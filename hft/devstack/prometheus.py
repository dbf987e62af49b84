"""Prometheus, scraping every process that serves ``/metrics``: the application processes (the
supervisor's process table), the Kafka nodes' JMX exporter agents, the stack's exporters
(:mod:`hft.devstack.exporters`: PostgreSQL, Redis, Airflow's metrics bridge) and MLflow
(``--expose-prometheus``, behind its login). Optional: without the binary the stack runs without it.

Debian's Prometheus 2.42 serves its web UI under ``/classic/`` (``/classic/targets``,
``/classic/graph``, ``/classic/alerts``, ...); ``/graph`` redirects there, while ``/targets``
answers 404. The HTTP API (``/api/v1/...``) and ``/-/ready``, ``/-/healthy`` are where Prometheus
documents them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path

from hft.devstack.exporters import EXPORTERS
from hft.devstack.host import http_ok, pid_alive, wait_for
from hft.devstack.service import PartStatus, Service
from hft.devstack.supervisor import scrape_targets

# what the classic UI answers on (Debian's build has no new React UI); see the module's doc
UI_PATHS = ("/classic/graph", "/classic/targets", "/classic/alerts", "/classic/status")


@dataclass(frozen=True)
class ScrapeJob:
    """One job of the generated ``prometheus.yml``."""

    name: str
    port: int
    path: str = "/metrics"
    username: str = ""
    password_file: Path | None = None


class Prometheus(Service):
    """Debian's ``prometheus`` with a generated config and two days of retention."""

    name = "prometheus"
    start_timeout = 30.0

    def available(self) -> bool:
        """Whether the binary is installed (``apt-get install prometheus``)."""
        return shutil.which("prometheus") is not None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.s.port('prometheus')}"

    @property
    def targets_url(self) -> str:
        """The targets page of the UI (Debian's 2.42 serves its UI under ``/classic/``)."""
        return f"{self.url}/classic/targets"

    def healthy(self) -> bool:
        return http_ok(f"{self.url}/-/ready")

    def status(self) -> PartStatus:
        if not self.available():
            return PartStatus(
                self.name, "-", False, "not installed (apt-get install prometheus)", state="absent"
            )
        return PartStatus(self.name, self.url, self.healthy(), f"targets: {self.targets_url}")

    def jobs(self) -> list[ScrapeJob]:
        """Every scrape job of this stack: the processes, the Kafka nodes, the exporters, MLflow."""
        jobs = [ScrapeJob("prometheus", self.s.port("prometheus"))]
        jobs += [ScrapeJob(job, port) for job, port in scrape_targets(self.s).items()]
        for cls in EXPORTERS:
            exporter = cls(self.s)
            if exporter.available():
                jobs.append(ScrapeJob(exporter.name, exporter.port))
        if not self.s.mlflow_tracking_uri:  # the embedded MLflow: /metrics asks for its login
            password = getattr(self.s, "mlflow_password", None)
            secret = password.get_secret_value() if password is not None else ""
            user = str(getattr(self.s, "mlflow_username", "")) if secret else ""
            pw_file = self._password_file("mlflow.password", secret) if secret else None
            jobs.append(ScrapeJob("mlflow", self.s.port("mlflow"), username=user, password_file=pw_file))
        return jobs

    def _password_file(self, name: str, secret: str) -> Path:
        """An owner-only file Prometheus reads a scrape password from (never the config itself)."""
        path = self.dir("prometheus") / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secret)
        path.chmod(0o600)
        return path

    def config_text(self) -> str:
        """``prometheus.yml``: a job per metrics endpoint, scraped every 5 s."""
        lines = ["global:", "  scrape_interval: 5s", "  evaluation_interval: 5s", "scrape_configs:"]
        for job in self.jobs():
            lines.append(f"  - job_name: {job.name}")
            if job.path != "/metrics":
                lines.append(f"    metrics_path: {job.path}")
            if job.password_file is not None:
                lines += [
                    "    basic_auth:",
                    f"      username: '{job.username}'",
                    f"      password_file: '{job.password_file}'",
                ]
            lines += ["    static_configs:", f"      - targets: ['{self.host}:{job.port}']"]
        return "\n".join(lines) + "\n"

    def write_config(self) -> Path:
        """Write ``prometheus.yml``; return its path."""
        path = self.dir("prometheus") / "prometheus.yml"
        path.write_text(self.config_text())
        return path

    def start(self, timeout: float | None = None) -> None:
        if not self.available():
            return
        cfg = self.dir("prometheus") / "prometheus.yml"
        old = cfg.read_text() if cfg.exists() else ""
        self.write_config()
        if self.healthy():
            if cfg.read_text() != old:
                self.reload()
            return
        cmd = [
            "prometheus",
            f"--config.file={cfg}",
            f"--storage.tsdb.path={self.dir('prometheus', 'data')}",
            f"--web.listen-address={self.host}:{self.s.port('prometheus')}",
            "--storage.tsdb.retention.time=2d",
        ]
        self.spawn(self.name, cmd)
        wait_for(self.healthy, "Prometheus", timeout or self.start_timeout)

    def reload(self) -> bool:
        """Make a running Prometheus read its config again (SIGHUP); False when we did not start it."""
        try:
            pid = int(self.pidfile(self.name).read_text().strip())
        except (OSError, ValueError):
            return False
        if not pid_alive(pid):
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGHUP)
        return True

    def stop(self) -> None:
        self.stop_pid(self.name)
