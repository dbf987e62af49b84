"""Nobody reaches the embedded stack's state without its credentials (issue "Nobody changes the
system without a key"): PostgreSQL over TCP, Redis, supervisord's XML-RPC; the generated passwords
live in one owner-only file and never show in status tables."""

from __future__ import annotations

import os
import stat
import time
import urllib.error
import urllib.request
import xmlrpc.client
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis

from hft.config import Settings, credentials_file, load_credentials
from hft.devstack.postgres import AUTH_MARKER, Postgres
from hft.devstack.stack import Stack
from hft.devstack.supervisor import Supervisor

pytestmark = pytest.mark.integration


def _without_password(url: str, password: str) -> str:
    return url.replace(f":{password}@", "@")


def test_credentials_are_generated_once_into_an_owner_only_file(tmp_path: Path) -> None:
    first = Settings(home=tmp_path)
    second = Settings(home=tmp_path)
    path = credentials_file(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    creds = load_credentials(tmp_path)
    assert len({creds["postgres_password"], creds["redis_password"], creds["supervisor_password"]}) == 3
    assert first.postgres_password.get_secret_value() == creds["postgres_password"]
    assert second.redis_dsn == first.redis_dsn
    assert f":{creds['redis_password']}@" in first.redis_dsn
    # given settings win; a service named by URL brings its own password
    assert Settings(home=tmp_path, postgres_password="mine").postgres_password.get_secret_value() == "mine"
    assert (
        Settings(home=tmp_path, redis_url="redis://elsewhere:6379/0").redis_dsn == "redis://elsewhere:6379/0"
    )


def test_postgres_asks_for_the_password(stack: Any, stack_settings: Settings) -> None:
    password = stack_settings.postgres_password.get_secret_value()
    url = stack_settings.database_url(driver="postgresql")
    with psycopg.connect(url, connect_timeout=5) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(_without_password(url, password), connect_timeout=5)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(url.replace(password, "wrong"), connect_timeout=5)


def test_redis_asks_for_the_password(stack: Any, stack_settings: Settings) -> None:
    password = stack_settings.redis_password.get_secret_value()
    assert redis.Redis.from_url(stack_settings.redis_dsn).ping()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host=stack_settings.bind_host, port=stack_settings.port("redis")).set("k", "v")
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host=stack_settings.bind_host, port=stack_settings.port("redis"), password="wrong").ping()
    assert password in stack_settings.redis_dsn
    conf = stack_settings.home_dir / "redis" / "redis.conf"
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600  # the password is in it, not on the command line


def test_mlflow_registry_asks_for_the_login(stack: Any, stack_settings: Settings) -> None:
    """Setting an alias without a login would let anyone choose the model the API hot-loads."""
    base = stack_settings.mlflow_uri
    auth = stack_settings.mlflow_auth()
    assert auth is not None
    assert auth[0] == stack_settings.mlflow_username
    api = f"{base}/api/2.0/mlflow"
    name = f"login-test-{os.getpid()}"
    assert httpx.get(f"{base}/health", timeout=10).status_code == 200  # probes stay open
    for who in (None, (auth[0], "wrong")):
        refused = httpx.post(f"{api}/registered-models/create", json={"name": name}, auth=who, timeout=10)
        assert refused.status_code == 401, refused.text[:200]
        read = httpx.get(f"{api}/registered-models/search", auth=who, timeout=10)
        assert read.status_code == 401, read.text[:200]
    reader = stack_settings.mlflow_auth(read_only=True)
    assert reader is not None
    assert reader[0] == f"{auth[0]}-reader"
    made = httpx.post(f"{api}/registered-models/create", json={"name": name}, auth=auth, timeout=10)
    assert made.status_code == 200, made.text[:200]
    try:
        alias = {"name": name, "alias": "champion", "version": "1"}
        refused = httpx.post(f"{api}/registered-models/alias", json=alias, timeout=10)
        assert refused.status_code == 401
        # the project's own clients send the login (hft.config.use_mlflow, set up by stack_settings)
        from mlflow import MlflowClient

        assert MlflowClient(base).get_registered_model(name).name == name
        seen = httpx.get(f"{api}/registered-models/get", params={"name": name}, auth=reader, timeout=10)
        assert seen.status_code == 200, seen.text[:200]  # ... and may read
        # ... and may not change what the admin made (MLflow lets any login create models of its own)
        refused = httpx.post(f"{api}/registered-models/alias", json=alias, auth=reader, timeout=10)
        assert refused.status_code == 403, refused.text[:200]
        gone = httpx.request(
            "DELETE", f"{api}/registered-models/delete", json={"name": name}, auth=reader, timeout=10
        )
        assert gone.status_code == 403, gone.text[:200]
        metrics = httpx.get(f"{base}/metrics", auth=auth, timeout=10)
        assert metrics.status_code == 200
        assert "mlflow_http_request_total" in metrics.text
        assert httpx.get(f"{base}/metrics", timeout=10).status_code == 401
    finally:
        httpx.request("DELETE", f"{api}/registered-models/delete", json={"name": name}, auth=auth, timeout=10)
    conf = stack_settings.home_dir / "mlflow" / "basic_auth.ini"
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600


def test_status_tables_never_show_a_password(stack: Any, stack_settings: Settings) -> None:
    shown = " ".join(f"{p.url} {p.detail}" for p in Stack(stack_settings).status())
    for key in ("postgres_password", "redis_password", "supervisor_password", "mlflow_password"):
        assert getattr(stack_settings, key).get_secret_value() not in shown
    assert ":***@" in shown


def test_supervisor_rpc_asks_for_the_login(tmp_path: Path) -> None:
    s = Settings(home=tmp_path, port_base=27700)
    sup = Supervisor(s, names=[])  # supervisord alone, no programs
    sup.start()
    try:
        url = f"http://{s.bind_host}:{s.port('supervisor')}/RPC2"
        with pytest.raises(xmlrpc.client.ProtocolError) as refused:
            xmlrpc.client.ServerProxy(url).supervisor.getState()
        assert refused.value.errcode == 401
        user, pw = s.supervisor_user, s.supervisor_password.get_secret_value()
        authed = f"http://{user}:{pw}@{s.bind_host}:{s.port('supervisor')}/RPC2"
        assert xmlrpc.client.ServerProxy(authed).supervisor.getState()["statename"] == "RUNNING"
        with pytest.raises(urllib.error.HTTPError) as page:
            urllib.request.urlopen(f"http://{s.bind_host}:{s.port('supervisor')}/", timeout=5)
        assert page.value.code == 401
        assert stat.S_IMODE(sup.conf.stat().st_mode) == 0o600
    finally:
        sup.stop()


def test_a_cluster_that_trusted_local_connections_gets_the_password_on_its_next_start(tmp_path: Path) -> None:
    """Clusters made before this version trusted every local TCP connection (initdb --auth=trust)."""
    if os.environ.get("HFT_TIMESCALE") == "1":
        pytest.skip("the plain PostgreSQL path; the TimescaleDB one runs the same _secure step")
    old = Settings(home=tmp_path, port_base=27720, postgres_password="")
    pg = Postgres(old)
    pg.start()
    try:
        open_url = old.database_url("postgres", driver="postgresql")
        with psycopg.connect(open_url, connect_timeout=5) as conn:  # no password: trusted
            conn.execute("SELECT 1")
        assert not (tmp_path / "pg" / AUTH_MARKER).exists()
        pg.stop()
        new = Settings(home=tmp_path, port_base=27720)  # now with the generated password
        Postgres(new).start()
        assert (tmp_path / "pg" / AUTH_MARKER).exists()
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(open_url, connect_timeout=5)
        deadline = time.monotonic() + 10
        while True:
            try:
                with psycopg.connect(
                    new.database_url("postgres", driver="postgresql"), connect_timeout=5
                ) as c:
                    assert c.execute("SELECT 1").fetchone() == (1,)
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    finally:
        Postgres(Settings(home=tmp_path, port_base=27720)).stop()


def test_hft_prints_every_login_on_request(stack: Any, stack_settings: Settings) -> None:
    import subprocess
    import sys

    out = subprocess.run(
        [str(Path(sys.executable).with_name("hft")), "stack", "credentials"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    for key in (
        "postgres_password",
        "redis_password",
        "supervisor_password",
        "mlflow_password",
        "mlflow_reader_password",
        "dashboard_password",
    ):
        assert getattr(stack_settings, key).get_secret_value() in out, key
