"""The embedded local stack: PostgreSQL, Redis, Apache Kafka (KRaft), MLflow, the exporters of
PostgreSQL, Redis and Airflow (:mod:`hft.devstack.exporters`), Prometheus.

Everything runs as the invoking user (PostgreSQL as ``postgres`` when started by root, since
``initdb`` refuses root) under ``Settings.home`` on ports derived from ``HFT_PORT_BASE``.
``up`` is idempotent, ``down`` stops only what ``up`` started (it keeps pid files), and each
service has a readiness check with a timeout. External services named in the settings
(``HFT_POSTGRES_URL``, ``HFT_REDIS_URL``, ``HFT_KAFKA_BOOTSTRAP``, ``HFT_MLFLOW_TRACKING_URI``)
are used instead of starting our own. Each service is one module of this package
(:class:`hft.devstack.service.Service`); :class:`Stack` lists them in start order.
"""

from __future__ import annotations

import logging
import subprocess
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from hft.config import Settings
from hft.devstack import service
from hft.devstack.exporters import AirflowMetrics, PostgresExporter, RedisExporter
from hft.devstack.kafka import KafkaCluster
from hft.devstack.mlflow import MLflow
from hft.devstack.postgres import Postgres
from hft.devstack.prometheus import Prometheus
from hft.devstack.redis import Redis
from hft.devstack.service import PartStatus, Service

log = logging.getLogger(__name__)


class Stack:
    """Start, stop and inspect the embedded services of one Settings."""

    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.postgres = Postgres(settings)
        self.redis = Redis(settings)
        self.kafka = KafkaCluster(settings)
        self.mlflow = MLflow(settings)
        self.postgres_exporter = PostgresExporter(settings)
        self.redis_exporter = RedisExporter(settings)
        self.airflow_metrics = AirflowMetrics(settings)
        self.prometheus = Prometheus(settings)
        # start order (an exporter after what it watches, Prometheus last); stop runs it backwards
        order: list[Service] = [
            self.postgres,
            self.redis,
            self.kafka,
            self.mlflow,
            self.postgres_exporter,
            self.redis_exporter,
            self.airflow_metrics,
            self.prometheus,
        ]
        self.services = {svc.name: svc for svc in order}

    def service(self, name: str) -> Service:
        """The service called ``name`` (KeyError naming the known ones otherwise)."""
        try:
            return self.services[name]
        except KeyError:
            raise KeyError(f"no stack service {name!r}; known: {', '.join(self.services)}") from None

    def pidfile(self, name: str) -> Path:
        """``Settings.home/pids/<name>.pid`` of a stack service or an application process."""
        return service.pidfile(self.s, name)

    def logfile(self, name: str) -> Path:
        """``Settings.home/logs/<name>.log`` of a stack service or an application process."""
        return self.services[name].log() if name in self.services else service.logfile(self.s, name)

    def up(self, parts: Iterable[str] | None = None, progress: Callable[[str], None] | None = None) -> None:
        """Start every service (or the named ones) that is not already running, in order."""
        wanted = set(parts) if parts else set(self.services)
        unknown = wanted - set(self.services)
        if unknown:
            raise KeyError(
                f"no stack service {', '.join(sorted(unknown))}; known: {', '.join(self.services)}"
            )
        for name, svc in self.services.items():
            if name in wanted and svc.available():
                if progress:
                    progress(name)
                svc.start()

    def down(self) -> None:
        """Stop every service that ``up`` started, in reverse order."""
        for name, svc in reversed(self.services.items()):
            try:
                svc.stop()
            except (OSError, subprocess.SubprocessError) as exc:
                log.warning("stopping %s failed: %s", name, exc)

    def heal(self) -> list[str]:
        """Restart every service that crashed (pid file left, process gone); return their names.

        A service stopped on purpose (``down``, ``stack.redis.stop()``) has no pid file and stays
        down; one that fails to come back is tried again on the next call.
        """
        restarted = []
        for name, svc in self.services.items():
            if not svc.managed or not svc.available() or not svc.crashed():
                continue
            log.warning("%s crashed: restarting it", name)
            try:
                svc.start()
            except Exception as exc:  # anything a start raises: the watchdog lives on, tries again
                log.error("restarting %s failed (next try in a moment): %s", name, exc)
                continue
            log.info("%s restarted", name)
            restarted.append(name)
        return restarted

    def watch(self, stop: threading.Event, interval_s: float = 2.0) -> None:
        """:meth:`heal` every ``interval_s`` until ``stop`` (``hft stack watch``, under supervisord)."""
        log.info("watching %s every %.0fs", ", ".join(self.services), interval_s)
        while not stop.wait(interval_s):
            self.heal()

    def status(self) -> list[PartStatus]:
        """Health and URL of each service."""
        return [svc.status() for svc in self.services.values()]
