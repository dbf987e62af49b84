"""Prometheus, scraping every process that serves ``/metrics`` (the list comes from the supervisor's
process table and the Kafka nodes). Optional: without the binary the stack runs without it."""

from __future__ import annotations

import shutil
from pathlib import Path

from hft.devstack.host import http_ok, wait_for
from hft.devstack.service import PartStatus, Service
from hft.devstack.supervisor import scrape_targets


class Prometheus(Service):
    """Debian's ``prometheus`` with a generated config and two days of retention."""

    name = "prometheus"
    start_timeout = 30.0

    @staticmethod
    def available() -> bool:
        """Whether the binary is installed (``apt-get install prometheus``)."""
        return shutil.which("prometheus") is not None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.s.port('prometheus')}"

    def healthy(self) -> bool:
        return http_ok(f"{self.url}/-/ready")

    def status(self) -> PartStatus:
        if not self.available():
            return PartStatus(self.name, "-", False, "not installed (apt-get install prometheus)")
        return PartStatus(self.name, self.url, self.healthy())

    def write_config(self) -> Path:
        """Write ``prometheus.yml`` with a job per metrics port; return its path."""
        lines = ["global:", "  scrape_interval: 5s", "  evaluation_interval: 5s", "scrape_configs:"]
        for job, port in scrape_targets(self.s).items():
            lines += [
                f"  - job_name: {job}",
                "    static_configs:",
                f"      - targets: ['{self.host}:{port}']",
            ]
        path = self.dir("prometheus") / "prometheus.yml"
        path.write_text("\n".join(lines) + "\n")
        return path

    def start(self, timeout: float | None = None) -> None:
        if not self.available() or self.healthy():
            return
        cfg = self.write_config()
        cmd = [
            "prometheus",
            f"--config.file={cfg}",
            f"--storage.tsdb.path={self.dir('prometheus', 'data')}",
            f"--web.listen-address={self.host}:{self.s.port('prometheus')}",
            "--storage.tsdb.retention.time=2d",
        ]
        self.spawn(self.name, cmd)
        wait_for(self.healthy, "Prometheus", timeout or self.start_timeout)

    def stop(self) -> None:
        self.stop_pid(self.name)
