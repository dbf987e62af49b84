"""The MLflow tracking server and model registry (its metadata in PostgreSQL, artifacts under
``Settings.home/mlflow``). ``HFT_MLFLOW_TRACKING_URI`` names an external server instead."""

from __future__ import annotations

import sys
from pathlib import Path

from hft.devstack.host import http_ok, wait_for
from hft.devstack.service import PartStatus, Service


class MLflow(Service):
    """``mlflow server`` with one worker."""

    name = "mlflow"
    start_timeout = 120.0

    @property
    def managed(self) -> bool:
        return not self.s.mlflow_tracking_uri

    def healthy(self) -> bool:
        return http_ok(f"{self.s.mlflow_uri}/health")

    def status(self) -> PartStatus:
        return PartStatus(self.name, self.s.mlflow_uri, self.healthy(), managed=self.managed)

    def start(self, timeout: float | None = None) -> None:
        if not self.managed or self.healthy():
            return
        cmd = [
            str(Path(sys.executable).with_name("mlflow")),
            "server",
            "--artifacts-destination",
            str(self.dir("mlflow", "artifacts")),
            "--host",
            self.host,
            "--port",
            str(self.s.port("mlflow")),
            "--workers",
            "1",
        ]
        env = {
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            # through the environment: a command line with the database password would show in ps
            "MLFLOW_BACKEND_STORE_URI": self.s.database_url("mlflow", driver="postgresql+psycopg2"),
        }
        self.spawn(self.name, cmd, env=env)
        wait_for(self.healthy, "MLflow", timeout or self.start_timeout, interval=0.5)

    def stop(self) -> None:
        if self.managed:
            self.stop_pid(self.name)
