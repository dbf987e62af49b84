"""Every service watched, and ``hft stack status`` right, on the real test stack.

Prometheus (Debian's 2.42, started by the stack) scrapes the exporters the stack starts: PostgreSQL's
and Redis' (Debian's exporters, logged in with the generated passwords), the Kafka broker's JMX
exporter agent, the bridge that serves Airflow's OpenTelemetry metrics, and MLflow's
``/metrics``. ``hft stack status`` is run as a user runs it, at 80 columns.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from hft.config import REPO_ROOT, Settings
from hft.devstack.prometheus import UI_PATHS
from hft.devstack.stack import Stack

pytestmark = pytest.mark.integration

BOARD = REPO_ROOT / "deploy" / "grafana" / "dashboards" / "hft-services.json"
HFT = str(Path(sys.executable).with_name("hft"))


@pytest.fixture(scope="module")
def prometheus(stack: Stack) -> str:
    if not stack.prometheus.available():
        pytest.skip("prometheus not installed (apt-get install prometheus)")
    assert stack.prometheus.healthy()
    return stack.prometheus.url


def _get_json(url: str, timeout: float = 10) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def _query(prom: str, expr: str) -> list[dict[str, Any]]:
    body = _get_json(f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def _targets(prom: str) -> dict[str, dict[str, Any]]:
    body = _get_json(f"{prom}/api/v1/targets?state=active")
    return {t["labels"]["job"]: t for t in body["data"]["activeTargets"]}


def _wait(check: Callable[[], Any], what: str, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(1)
    raise AssertionError(f"{what} not true after {timeout:.0f}s (last: {last!r})")


def _exporter_jobs(stack: Stack) -> set[str]:
    jobs = {"kafka", "airflow-metrics", "prometheus"}
    for exporter in (stack.postgres_exporter, stack.redis_exporter):
        if not exporter.available():
            pytest.skip(f"{exporter.binary} not installed (apt-get install {exporter.package})")
        jobs.add(exporter.name)
    return jobs


def test_prometheus_scrapes_every_exporter_and_each_target_is_up(stack: Stack, prometheus: str) -> None:
    jobs = _exporter_jobs(stack)

    def all_up() -> dict[str, str]:
        targets = _targets(prometheus)
        health = {job: targets[job]["health"] if job in targets else "missing" for job in jobs}
        return health if set(health.values()) == {"up"} else {}

    try:
        _wait(all_up, "every exporter target up", 60)
    except AssertionError:
        targets = _targets(prometheus)
        raise AssertionError({j: (targets.get(j) or {}).get("lastError", "missing") for j in jobs}) from None
    # each listens on the stack's address only
    for job in jobs:
        assert _targets(prometheus)[job]["scrapeUrl"].startswith(f"http://{stack.s.bind_host}:")


def test_each_exporter_reports_what_it_watches(stack: Stack, prometheus: str) -> None:
    _exporter_jobs(stack)

    def value(expr: str) -> float | None:
        result = _query(prometheus, expr)
        return float(result[0]["value"][1]) if result else None

    assert _wait(lambda: value('pg_up{job="postgres-exporter"}') == 1, "pg_up 1", 60)
    assert _wait(lambda: value('redis_up{job="redis-exporter"}') == 1, "redis_up 1", 60)
    kafka = _wait(
        lambda: _query(prometheus, 'count by (__name__) ({__name__=~"kafka_server_.+", job="kafka"})'),
        "kafka_server_* metrics",
        60,
    )
    assert len(kafka) >= 3, kafka
    # they read real state: the databases the stack created, the keys a client just wrote
    dbs = {r["metric"].get("datname") for r in _query(prometheus, "pg_stat_database_numbackends")}
    assert {stack.s.postgres_db, "mlflow", "airflow", "optuna"} <= dbs, dbs
    r = redis.Redis.from_url(stack.s.redis_dsn.rsplit("/", 1)[0] + "/9")  # a database nothing else uses
    r.flushdb()
    r.mset({f"observability-{i}": i for i in range(7)})
    try:
        assert _wait(lambda: value('redis_db_keys{db="db9"}') == 7, "redis_db_keys 7 in db9", 30)
    finally:
        r.flushdb()


def test_a_stopped_exporter_shows_down_in_prometheus_and_comes_back(stack: Stack, prometheus: str) -> None:
    _exporter_jobs(stack)
    stack.redis_exporter.stop()
    try:
        assert not stack.redis_exporter.healthy()
        _wait(lambda: _targets(prometheus)["redis-exporter"]["health"] == "down", "redis-exporter down", 30)
    finally:
        stack.redis_exporter.start()
    _wait(lambda: _targets(prometheus)["redis-exporter"]["health"] == "up", "redis-exporter up again", 30)


def test_mlflow_is_scraped_with_its_login(stack: Stack, prometheus: str) -> None:
    target = _targets(prometheus).get("mlflow")
    assert target is not None, "no mlflow job"
    assert target["scrapeUrl"] == f"{stack.s.mlflow_uri}/metrics"
    request = urllib.request.Request(f"{stack.s.mlflow_uri}/metrics")
    auth = getattr(stack.s, "mlflow_auth", lambda: None)()
    if auth:
        import base64

        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            serves = resp.status == 200
    except OSError:
        serves = False
    if not serves:
        pytest.skip("this MLflow serves no /metrics (mlflow server --expose-prometheus not set)")
    _wait(lambda: _targets(prometheus)["mlflow"]["health"] == "up", "mlflow target up", 30)
    assert _wait(lambda: _query(prometheus, 'mlflow_http_request_total{job="mlflow"}'), "MLflow", 30)


def test_the_services_dashboard_reads_series_that_exist(stack: Stack, prometheus: str) -> None:
    """A Grafana panel on an exporter's metric that the exporter does not serve would stay empty."""
    _exporter_jobs(stack)
    exprs = [t["expr"] for p in json.loads(BOARD.read_text())["panels"] for t in p.get("targets", [])]
    names = {n for e in exprs for n in re.findall(r"\b((?:pg|redis|kafka_server)_[a-z0-9_]+)\b", e)}
    assert len(names) >= 8, names
    _wait(lambda: _query(prometheus, "kafka_server_replicamanager_value"), "kafka scraped", 60)
    missing = [n for n in sorted(names) if not _query(prometheus, f'count({{__name__="{n}"}})')]
    assert not missing, f"the dashboard reads metrics nothing serves: {missing}"


def test_prometheus_ui_answers_where_the_status_says(prometheus: str) -> None:
    for path in (*UI_PATHS, "/api/v1/targets", "/-/ready"):
        with urllib.request.urlopen(f"{prometheus}{path}", timeout=10) as resp:
            assert resp.status == 200, path


# ---- hft stack status ---------------------------------------------------------------------------
def _status(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "80", "TERM": "dumb"}
    return subprocess.run(
        [HFT, "stack", "status", *args], capture_output=True, text=True, env=env, timeout=120, cwd=REPO_ROOT
    )


def _rows(out: str) -> dict[str, str]:
    """part -> health label, from the table's first line of each row."""
    rows = {}
    for line in out.splitlines():
        m = re.match(r"^(\S+)\s+(healthy|down|absent|stopped|starting|not ready)\b", line)
        if m:
            rows[m.group(1)] = m.group(2)
    return rows


def _assert_fits(out: str) -> None:
    long = [line for line in out.splitlines() if len(line) > 80]
    assert not long, "lines over 80 columns:\n" + "\n".join(long)


def test_stack_status_fits_80_columns_and_checks_every_row(stack: Stack) -> None:
    _exporter_jobs(stack)
    proc = _status()
    _assert_fits(proc.stdout)
    rows = _rows(proc.stdout)
    for name in (
        "postgres",
        "redis",
        "kafka",
        "mlflow",
        "postgres-exporter",
        "redis-exporter",
        "airflow-metrics",
    ):
        assert rows.get(name) == "healthy", proc.stdout
    if stack.prometheus.available():
        assert rows["prometheus"] == "healthy", proc.stdout
    # no supervisord in this test yet: its processes are stopped, not failing
    for name in ("api", "dashboard", "airflow", "supervisor", "worker"):
        assert rows.get(name) == "stopped", proc.stdout
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # a URL and the Airflow password's path are whole, if wrapped
    flat = "".join(line.strip() for line in proc.stdout.splitlines())
    assert f"{stack.s.home_dir}/airflow/simple_auth_manager_passwords.json.generated" in flat
    wide = _status("--wide")
    assert f"{stack.s.home_dir}/airflow/simple_auth_manager_passwords.json.generated" in wide.stdout
    assert _rows(wide.stdout) == rows


def test_stack_status_says_down_for_a_stopped_service_and_exits_1(stack: Stack) -> None:
    _exporter_jobs(stack)
    stack.postgres_exporter.stop()
    try:
        proc = _status()
        _assert_fits(proc.stdout)
        rows = _rows(proc.stdout)
        assert rows["postgres-exporter"] == "down", proc.stdout
        assert rows["redis-exporter"] == "healthy", proc.stdout
        assert proc.returncode == 1
    finally:
        stack.postgres_exporter.start()
    assert _rows(_status().stdout)["postgres-exporter"] == "healthy"


@pytest.fixture(scope="module")
def supervised(stack: Stack, stack_settings: Settings) -> Iterator[Any]:
    """supervisord running the API, the dashboard and Airflow (standalone), as
    ``hft up api dashboard airflow``."""
    from hft.devstack.supervisor import Supervisor

    sup = Supervisor(stack_settings, ["api", "dashboard", "airflow"])
    sup.start()
    yield sup
    sup.stop()


@pytest.mark.slow
def test_application_rows_are_healthy_under_the_supervisor_and_airflow_metrics_flow(
    stack: Stack, stack_settings: Settings, supervised: Any, prometheus: str
) -> None:
    from hft.devstack.apps import app_status, supervisor_rpc

    def healthy() -> dict[str, str]:
        rows = {p.name: p.label for p in app_status(stack_settings)}
        want = {"supervisor", "dashboard", "airflow"}
        # the API answers; without a champion in this stack's registry it is not ready
        api_answers = rows["api"] in ("healthy", "not ready")
        return rows if api_answers and all(rows[n] == "healthy" for n in want) else {}

    def explain() -> str:
        """What the supervisor and Airflow logged: why a program (re)started or is not answering."""
        logs = stack_settings.home_dir / "logs"
        sup = logs / "supervisord.log"
        sup_tail = sup.read_text(errors="replace").splitlines()[-15:] if sup.exists() else []
        log = logs / "airflow.log"
        lines = log.read_text(errors="replace").splitlines() if log.exists() else []
        worth = [ln for ln in lines if "standalone" in ln or "Traceback" in ln or "rror" in ln][-20:]
        rows = [(p.name, p.label, p.detail) for p in app_status(stack_settings)]
        return "\n".join([repr(rows), "supervisord.log:", *sup_tail, "airflow.log:", *worth, *lines[-20:]])

    try:
        _wait(healthy, "supervisor, dashboard and Airflow healthy", 420)
    except AssertionError:
        raise AssertionError(explain()) from None
    pid = supervisor_rpc(stack_settings).supervisor.getProcessInfo("airflow")["pid"]

    def cli_healthy() -> subprocess.CompletedProcess[str] | None:
        proc = _status()
        rows = _rows(proc.stdout)
        ok = (rows.get("supervisor"), rows.get("dashboard"), rows.get("airflow")) == ("healthy",) * 3
        return proc if ok else None

    # What the CLI prints is what app_status said a moment ago. Airflow's health also reads its
    # scheduler's heartbeat, which a scheduler catching up on queued runs under CI's load can let
    # lapse for a while: wait for the CLI's rows, and say if supervisord restarted Airflow meanwhile.
    try:
        proc = _wait(cli_healthy, "hft stack status: supervisor, dashboard and Airflow healthy", 180)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{_status().stdout}\n{explain()}") from None
    now = supervisor_rpc(stack_settings).supervisor.getProcessInfo("airflow")["pid"]
    if now != pid:
        print(f"supervisord restarted Airflow (pid {pid} -> {now}):\n{explain()}")
    _assert_fits(proc.stdout)
    rows = _rows(proc.stdout)
    assert rows["worker"] == "stopped", proc.stdout  # not among the processes started
    api = next(p for p in app_status(stack_settings) if p.name == "api")
    if api.label == "not ready":  # /health answers, /ready says why not
        assert "no champion model" in api.detail or "unavailable" in api.detail, api.detail
        assert rows["api"] == "not ready", proc.stdout
    assert proc.returncode == 0, proc.stdout

    # Airflow's scheduler heartbeats reach Prometheus through the OTLP bridge
    heartbeat = _wait(
        lambda: _query(prometheus, 'airflow_scheduler_heartbeat_total{job="airflow-metrics"}'),
        "airflow_scheduler_heartbeat_total in Prometheus",
        120,
    )
    assert float(heartbeat[0]["value"][1]) >= 1

    # a process stopped through supervisord is no longer healthy
    supervisor_rpc(stack_settings, timeout=30).supervisor.stopProcess("dashboard")
    rows = _rows(_status().stdout)
    assert rows["dashboard"] == "stopped"
