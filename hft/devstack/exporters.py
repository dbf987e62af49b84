"""Prometheus exporters of the stack services that serve no ``/metrics`` of their own.

- ``postgres-exporter``: Debian's ``prometheus-postgres-exporter`` (0.11) on the stack's PostgreSQL
  (``pg_up``, ``pg_stat_database_*``, ``pg_locks_count``, ...);
- ``redis-exporter``: Debian's ``prometheus-redis-exporter`` (1.45) on the stack's Redis
  (``redis_up``, ``redis_memory_used_bytes``, ``redis_commands_processed_total``, ...);
- ``airflow-metrics``: :mod:`hft.devstack.otlp_bridge`, which receives the OpenTelemetry metrics
  Airflow pushes (``[metrics] otel_on``, set by :func:`hft.devstack.airflow.airflow_env`) and serves
  them as ``airflow_*`` on ``/metrics``.

Kafka's own metrics come from the JMX exporter agent in each broker (:mod:`hft.devstack.kafka`),
MLflow's from ``mlflow server --expose-prometheus`` (:mod:`hft.devstack.mlflow`).

Each exporter binds ``Settings.bind_host`` on its ``metrics_*`` port and is optional: without its
binary (``apt-get install prometheus-postgres-exporter prometheus-redis-exporter``) the stack runs
without it. Passwords never reach a command line: the PostgreSQL exporter reads its password from
an owner-only file (``DATA_SOURCE_PASS_FILE``), the Redis exporter from its environment
(``REDIS_PASSWORD``).
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import urllib.request
from pathlib import Path
from urllib.parse import unquote, urlsplit

from hft.devstack.host import http_ok, wait_for
from hft.devstack.service import PartStatus, Service


class Exporter(Service):
    """A long-lived exporter process serving ``/metrics`` on ``Settings.port(port_key)``."""

    port_key = ""
    binary = ""
    package = ""
    up_metric = ""  # the gauge that says whether the exporter reaches what it watches
    start_timeout = 20.0

    def available(self) -> bool:
        return shutil.which(self.binary) is not None

    @property
    def port(self) -> int:
        return self.s.port(self.port_key)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return {}

    def healthy(self) -> bool:
        return http_ok(self.url, timeout=3.0)

    def watched_up(self) -> float | None:
        """The value of :attr:`up_metric` on ``/metrics`` now (None when it does not answer)."""
        if not self.up_metric:
            return None
        try:
            with urllib.request.urlopen(self.url, timeout=3.0) as resp:  # noqa: S310 - our localhost URL
                text = resp.read().decode("utf-8", "replace")
        except (OSError, ValueError):
            return None
        m = re.search(rf"^{re.escape(self.up_metric)}(?:{{[^}}]*}})? (\S+)$", text, flags=re.MULTILINE)
        return float(m.group(1)) if m else None

    def status(self) -> PartStatus:
        if not self.available():
            hint = f"not installed (apt-get install {self.package})"
            return PartStatus(self.name, "-", False, hint, state="absent")
        up = self.watched_up()
        healthy = up is not None or self.healthy()
        detail = f"{self.up_metric} {up:g}" if up is not None else ""
        return PartStatus(self.name, self.url, healthy, detail)

    def start(self, timeout: float | None = None) -> None:
        if not self.available() or self.healthy():
            return
        self.spawn(self.name, self.command(), env=self.env())
        wait_for(self.healthy, self.name, timeout or self.start_timeout)

    def stop(self) -> None:
        self.stop_pid(self.name)

    def secret_file(self, name: str, secret: str) -> Path:
        """Write ``secret`` to an owner-only file under ``Settings.home/exporters``; return its path."""
        d = self.dir("exporters")
        d.chmod(0o700)
        path = d / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secret)
        path.chmod(0o600)
        return path


class PostgresExporter(Exporter):
    """``prometheus-postgres-exporter`` on the stack's (or the configured) PostgreSQL."""

    name = "postgres-exporter"
    port_key = "metrics_postgres"
    binary = "prometheus-postgres-exporter"
    package = "prometheus-postgres-exporter"
    up_metric = "pg_up"

    def command(self) -> list[str]:
        return [
            self.binary,
            f"--web.listen-address={self.host}:{self.port}",
            # pg_settings is ~300 constant series: left out
            "--disable-settings-metrics",
            "--log.level=warn",
        ]

    def env(self) -> dict[str, str]:
        url = urlsplit(self.s.database_url("postgres", driver="postgresql"))
        host = url.hostname or self.host
        port = url.port or 5432
        db = url.path.lstrip("/") or "postgres"
        env = {
            "DATA_SOURCE_URI": f"{host}:{port}/{db}?sslmode=disable",
            "DATA_SOURCE_USER": unquote(url.username or self.s.postgres_user),
        }
        if url.password:
            env["DATA_SOURCE_PASS_FILE"] = str(self.secret_file("postgres.password", unquote(url.password)))
        return env


class RedisExporter(Exporter):
    """``prometheus-redis-exporter`` on the stack's (or the configured) Redis."""

    name = "redis-exporter"
    port_key = "metrics_redis"
    binary = "prometheus-redis-exporter"
    package = "prometheus-redis-exporter"
    up_metric = "redis_up"

    def command(self) -> list[str]:
        url = urlsplit(self.s.redis_dsn)
        scheme = url.scheme or "redis"
        address = f"{scheme}://{url.hostname or self.host}:{url.port or 6379}"
        return [self.binary, f"-web.listen-address={self.host}:{self.port}", f"-redis.addr={address}"]

    def env(self) -> dict[str, str]:
        url = urlsplit(self.s.redis_dsn)
        env = {}
        if url.password:
            env["REDIS_PASSWORD"] = unquote(url.password)  # the environment: ps shows no password
        if url.username:
            env["REDIS_USER"] = unquote(url.username)
        return env


class AirflowMetrics(Exporter):
    """The OTLP → Prometheus bridge for Airflow's metrics (:mod:`hft.devstack.otlp_bridge`).

    Airflow pushes OpenTelemetry metrics to ``http://<host>:<port>/v1/metrics``; Prometheus reads
    them on ``/metrics`` of the same port. Runs when Airflow is enabled (``HFT_AIRFLOW_ENABLED``).
    """

    name = "airflow-metrics"
    port_key = "metrics_airflow"
    up_metric = ""

    def available(self) -> bool:
        return bool(self.s.airflow_enabled)

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "hft.devstack.otlp_bridge",
            "--host",
            self.host,
            "--port",
            str(self.port),
        ]

    def status(self) -> PartStatus:
        if not self.available():
            return PartStatus(self.name, "-", False, "Airflow disabled (HFT_AIRFLOW_ENABLED)", state="absent")
        return PartStatus(self.name, self.url, self.healthy(), "Airflow's OpenTelemetry metrics")


EXPORTERS: tuple[type[Exporter], ...] = (PostgresExporter, RedisExporter, AirflowMetrics)
"""The exporters, in start order (after the services they watch, before Prometheus)."""
