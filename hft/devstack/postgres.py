"""PostgreSQL: plain (Debian's server) or TimescaleDB (:mod:`hft.devstack.timescale`), one cluster per
``Settings.home`` with the project's databases. ``HFT_POSTGRES_URL`` names an external server instead.

Run as root, the server runs as ``postgres`` (``initdb`` refuses root).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import psycopg

from hft.devstack import timescale
from hft.devstack.host import find_binary, is_root, port_open, wait_for
from hft.devstack.service import PartStatus, Service

PG_BIN_DIRS = [
    Path("/usr/lib/postgresql/15/bin"),
    Path("/usr/lib/postgresql/16/bin"),
    Path("/usr/lib/postgresql/17/bin"),
]
DATABASES = ("hft", "mlflow", "airflow", "optuna")
_INSTALL = "install PostgreSQL (apt-get install postgresql)"


class Postgres(Service):
    """The market, features, trading, MLflow, Airflow and Optuna databases."""

    name = "postgres"
    start_timeout = 60.0

    @property
    def managed(self) -> bool:
        return not self.s.postgres_url

    def healthy(self) -> bool:
        try:
            with psycopg.connect(
                self.s.database_url("postgres", driver="postgresql"), connect_timeout=2
            ) as c:
                c.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False

    def status(self) -> PartStatus:
        detail = "TimescaleDB" if self.s.timescale else "PostgreSQL"
        return PartStatus(self.name, self.s.database_url(), self.healthy(), detail, managed=self.managed)

    def start(self, timeout: float | None = None) -> None:
        if not self.managed:
            return
        timeout = timeout or self.start_timeout
        if self.s.timescale:
            timescale.start(self, timeout)
        else:
            self._start_plain(timeout)
        self._create_databases()

    def stop(self) -> None:
        if not self.managed:
            return
        if self.s.timescale:
            timescale.stop(self)
            return
        data = self.home / "pg"
        if not (data / "postmaster.pid").exists():
            self.pidfile(self.name).unlink(missing_ok=True)
            return
        pg_ctl = find_binary("pg_ctl", PG_BIN_DIRS)
        subprocess.run(
            self._as_postgres([pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"]),
            check=False,
            capture_output=True,
        )
        self.pidfile(self.name).unlink(missing_ok=True)

    # ---- plain PostgreSQL ---------------------------------------------------------------------
    def _as_postgres(self, cmd: list[str]) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *cmd] if is_root() else cmd

    def _start_plain(self, timeout: float) -> None:
        port = self.s.port("postgres")
        data = self.home / "pg"
        sock = self.dir("pg-sock")
        if port_open(self.host, port) and self.healthy():
            return
        initdb = find_binary("initdb", PG_BIN_DIRS, _INSTALL)
        pg_ctl = find_binary("pg_ctl", PG_BIN_DIRS, _INSTALL)
        if is_root():
            # postgres must be able to reach its data directory through our tree
            for p in [self.home, *self.home.parents]:
                if p == Path("/"):
                    break
                mode = p.stat().st_mode
                if not mode & 0o001:
                    p.chmod(mode | 0o001)
        if not (data / "PG_VERSION").exists():
            data.mkdir(parents=True, exist_ok=True)
            if is_root():
                shutil.chown(data, "postgres", "postgres")
            initdb_cmd = [initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"]
            initdb_cmd += ["--locale=C.UTF-8", "--no-instructions"]
            subprocess.run(self._as_postgres(initdb_cmd), check=True, capture_output=True)
        if is_root():
            shutil.chown(sock, "postgres", "postgres")
        opts = (
            f"-p {port} -k {sock} -c listen_addresses={self.host} -c max_connections=200 "
            "-c shared_buffers=256MB -c synchronous_commit=on -c fsync=on"
        )
        logf = self.logfile(self.name)
        if is_root():
            logf.touch()
            shutil.chown(logf, "postgres", "postgres")
        start = [pg_ctl, "-D", str(data), "-l", str(logf), "-o", opts, "-w", "-t", str(int(timeout)), "start"]
        subprocess.run(self._as_postgres(start), check=True, capture_output=True)
        self.pidfile(self.name).write_text((data / "postmaster.pid").read_text().splitlines()[0])
        wait_for(self.healthy, "PostgreSQL", timeout)

    def _create_databases(self) -> None:
        with psycopg.connect(self.s.database_url("postgres", driver="postgresql"), autocommit=True) as c:
            existing = {r[0] for r in c.execute("SELECT datname FROM pg_database")}
            for db in DATABASES:
                name = self.s.postgres_db if db == "hft" else db
                if name not in existing:
                    c.execute(f'CREATE DATABASE "{name}"')
