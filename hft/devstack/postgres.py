"""PostgreSQL: plain (Debian's server) or TimescaleDB (:mod:`hft.devstack.timescale`), one cluster per
``Settings.home`` with the project's databases. ``HFT_POSTGRES_URL`` names an external server instead.

Run as root, the server runs as ``postgres`` (``initdb`` refuses root). Every TCP connection needs
the password (scram-sha-256; ``HFT_POSTGRES_PASSWORD``, generated into ``HFT_HOME/credentials.json``
when unset); the plain server's unix socket lives in ``HFT_HOME/pg-sock`` (mode 0700, so only this
account reaches it). A cluster made by an older version, which trusted every local connection,
gets the password and these rules on its next start.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
from pathlib import Path

import psycopg
from psycopg import sql

from hft.config import mask_url
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
AUTH_MARKER = "hft-auth"  # in the data directory once the password and pg_hba.conf below are in place


def hba_rules(bind_host: str) -> str:
    """pg_hba.conf: the password over TCP; the unix socket (a 0700 directory) for this account."""
    lines = [
        "# written by hft (hft/devstack/postgres.py): a password for every TCP connection",
        "local   all  all                 trust",
        "host    all  all  127.0.0.1/32   scram-sha-256",
        "host    all  all  ::1/128        scram-sha-256",
    ]
    with_loopback = bind_host in ("localhost", "")
    if not with_loopback:
        try:
            with_loopback = ipaddress.ip_address(bind_host).is_loopback
        except ValueError:
            with_loopback = False
    if not with_loopback:
        lines += [
            "host    all  all  0.0.0.0/0      scram-sha-256",
            "host    all  all  ::/0           scram-sha-256",
        ]
    return "\n".join(lines) + "\n"


class Postgres(Service):
    """The market, features, trading, MLflow, Airflow and Optuna databases."""

    name = "postgres"
    start_timeout = 60.0

    @property
    def managed(self) -> bool:
        return not self.s.postgres_url

    @property
    def _admin_url(self) -> str:
        """libpq URL of the ``postgres`` maintenance database, with the password."""
        return self.s.database_url("postgres", driver="postgresql")

    def healthy(self) -> bool:
        try:
            with psycopg.connect(self._admin_url, connect_timeout=2) as c:
                c.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False

    def status(self) -> PartStatus:
        detail = "TimescaleDB" if self.s.timescale else "PostgreSQL"
        return PartStatus(
            self.name,
            mask_url(self.s.database_url(driver="postgresql")),
            self.healthy(),
            detail,
            managed=self.managed,
        )

    def start(self, timeout: float | None = None) -> None:
        if not self.managed:
            return
        timeout = timeout or self.start_timeout
        if self.s.timescale:
            timescale.start(self, timeout)
            self._secure(timescale.data_dir(self))
        else:
            self._start_plain(timeout)
            self._secure(self.home / "pg")
        self._create_databases()

    def _secure(self, data: Path) -> None:
        """Once per cluster: set the password, then require it (scram-sha-256) on every TCP connection.

        A new cluster starts trusting local connections (initdb); so did every cluster of older
        versions. The first start sets the password over that trust and reloads the new rules.
        """
        marker = data / AUTH_MARKER
        if marker.exists():
            return
        user = self.s.postgres_user
        password = self.s.postgres_password.get_secret_value()
        if not password:
            return  # HFT_POSTGRES_PASSWORD explicitly empty: leave the cluster as it is
        with psycopg.connect(self._admin_url, autocommit=True) as c:
            c.execute(
                sql.SQL("ALTER USER {} PASSWORD {}").format(sql.Identifier(user), sql.Literal(password))
            )
            owner = data.stat()
            for path, text in ((data / "pg_hba.conf", hba_rules(self.host)), (marker, "scram-sha-256\n")):
                path.write_text(text)
                os.chown(path, owner.st_uid, owner.st_gid)
                path.chmod(0o600)
            c.execute("SELECT pg_reload_conf()")

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
        sock.chmod(0o700)  # the socket trusts whoever reaches it: this account only
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
        with psycopg.connect(self._admin_url, autocommit=True) as c:
            existing = {r[0] for r in c.execute("SELECT datname FROM pg_database")}
            for db in DATABASES:
                name = self.s.postgres_db if db == "hft" else db
                if name not in existing:
                    c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
