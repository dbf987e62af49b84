"""The MLflow tracking server and model registry (its metadata in PostgreSQL, artifacts under
``Settings.home/mlflow``). ``HFT_MLFLOW_TRACKING_URI`` names an external server instead.

Every request but ``/health`` asks for a login: MLflow's ``basic-auth`` app, its users in
``mlflow/basic_auth.db``, the admin ``HFT_MLFLOW_USERNAME`` created on the first start with the
generated ``mlflow_password`` (``hft stack credentials``). The project's clients send it
(``hft.config.use_mlflow``); a browser asks for it. ``/metrics`` (Prometheus, with the same login)
comes from ``--expose-prometheus``."""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

import httpx

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

    def auth_config(self) -> Path:
        """Write the basic-auth app's configuration (owner only: it names the users' database)."""
        path = self.dir("mlflow") / "basic_auth.ini"
        text = "\n".join(
            [
                "[mlflow]",
                # users other than the admin (made with MLflow's user API) may read, not write
                "default_permission = READ",
                f"database_uri = sqlite:///{self.dir('mlflow') / 'basic_auth.db'}",
                f"admin_username = {self.s.mlflow_username}",
                "authorization_function = mlflow.server.auth:authenticate_request_basic_auth",
                # the password hash (PBKDF2) once a minute per login, not on every request
                "auth_cache_ttl_seconds = 60",
                "",
            ]
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return path

    def flask_secret(self) -> str:
        """The key MLflow's login forms are signed with (CSRF): made once, kept owner-only."""
        path = self.dir("mlflow") / "flask_secret"
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
        return path.read_text().strip()

    def start(self, timeout: float | None = None) -> None:
        if self.managed and self.crashed():
            self.stop_pid(self.name)  # what its crash left behind (an orphaned uvicorn may still serve)
        if not self.managed or self.healthy():
            return
        metrics = self.dir("mlflow", "metrics")
        for stale in metrics.glob("*.db"):  # the last run's per-process counters (multiprocess mode)
            stale.unlink()
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
            "--app-name",
            "basic-auth",
            "--expose-prometheus",
            str(metrics),
        ]
        env = {
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            # through the environment: a command line with a password would show in ps
            "MLFLOW_BACKEND_STORE_URI": self.s.database_url("mlflow", driver="postgresql+psycopg2"),
            "MLFLOW_AUTH_CONFIG_PATH": str(self.auth_config()),
            # creates the admin on the first start only; later starts keep the stored login
            "MLFLOW_AUTH_ADMIN_PASSWORD": self.s.mlflow_password.get_secret_value(),
            "MLFLOW_FLASK_SERVER_SECRET_KEY": self.flask_secret(),
        }
        self.spawn(self.name, cmd, env=env)
        wait_for(self.healthy, "MLflow", timeout or self.start_timeout, interval=0.5)
        self.ensure_reader()

    def ensure_reader(self) -> None:
        """The read-only login (``<user>-reader``, default permission READ) exists with the current
        password: made on the first start, its password set again on later ones."""
        admin, reader = self.s.mlflow_auth(), self.s.mlflow_auth(read_only=True)
        if admin is None or reader is None or reader == admin:
            return
        api = f"{self.s.mlflow_uri}/api/2.0/mlflow/users"
        body = {"username": reader[0], "password": reader[1]}
        made = httpx.post(f"{api}/create", json=body, auth=admin, timeout=30)
        if made.status_code == 200:
            return
        if "RESOURCE_ALREADY_EXISTS" not in made.text:
            raise RuntimeError(f"MLflow refused to create {reader[0]}: {made.status_code} {made.text[:200]}")
        updated = httpx.patch(f"{api}/update-password", json=body, auth=admin, timeout=30)
        if updated.status_code != 200:
            raise RuntimeError(
                f"MLflow refused {reader[0]}'s password: {updated.status_code} {updated.text[:200]}"
            )

    def stop(self) -> None:
        if self.managed:
            self.stop_pid(self.name)
