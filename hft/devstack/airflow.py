"""The Airflow environment of the embedded stack: one function that every Airflow call goes through.

``airflow standalone`` (started by ``hft up`` through ``hft airflow standalone``), ``airflow dags
test`` in the tests and any ``hft airflow ...`` helper get the same variables, so the metadata
database, the folders and the ports never drift apart. Nothing here imports Airflow: the
variables must be set before Airflow reads its configuration.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from hft.config import REPO_ROOT, Settings

DAGS_FOLDER = REPO_ROOT / "dags"
PLUGINS_FOLDER = REPO_ROOT / "plugins"
PASSWORDS_FILE_NAME = "simple_auth_manager_passwords.json.generated"


def airflow_home(settings: Settings) -> Path:
    """Return AIRFLOW_HOME: ``<settings.home>/airflow``."""
    return settings.home_dir / "airflow"


def admin_passwords_file(settings: Settings) -> Path:
    """Return the file where Airflow's simple auth manager writes the generated admin password."""
    return airflow_home(settings) / PASSWORDS_FILE_NAME


def airflow_url(settings: Settings) -> str:
    """Return the base URL of the Airflow api-server (UI and REST API)."""
    return f"http://{settings.bind_host}:{settings.port('airflow')}"


def airflow_metrics_endpoint(settings: Settings) -> str:
    """Where Airflow pushes its OpenTelemetry metrics: the stack's ``airflow-metrics`` bridge."""
    return f"http://{settings.bind_host}:{settings.port('metrics_airflow')}/v1/metrics"


def airflow_env(settings: Settings, base: dict[str, str] | None = None) -> dict[str, str]:
    """Return the environment for any Airflow process of this stack (``base`` defaults to os.environ).

    The values follow MACHINE-NOTES.md: metadata in the local PostgreSQL (psycopg2 driver),
    the api-server on ``settings.port("airflow")`` with the execution API pointed at it (else
    every task fails with "connection refused"), 4 LocalExecutor workers instead of 32, the
    log servers moved off 8793/8794, no example DAGs.
    """
    env = dict(os.environ if base is None else base)
    home = airflow_home(settings)
    url = airflow_url(settings)
    bin_dir = str(Path(sys.executable).parent)
    # `airflow standalone` starts its components as `airflow ...` from PATH: the venv's first
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": settings.database_url(
                "airflow", driver="postgresql+psycopg2"
            ),
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(PLUGINS_FOLDER),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "4",
            "AIRFLOW__CORE__DEFAULT_TIMEZONE": "utc",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{url}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{settings.airflow_admin_user}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(admin_passwords_file(settings)),
            "AIRFLOW__API__HOST": settings.bind_host,
            "AIRFLOW__API__PORT": str(settings.port("airflow")),
            "AIRFLOW__API__BASE_URL": url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(settings.port("airflow_worker_logs")),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(settings.port("airflow_trigger_logs")),
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
            # one parsing process and a slower re-parse: the machine has two cores shared by everything
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "60",
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            # task processes talk to the api-server's execution API; on a loaded 2-core machine its
            # answers take longer than the 5 s default (ReadTimeout kills the task)
            "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "30",
            "AIRFLOW__WORKERS__EXECUTION_API_RETRIES": "10",
            "AIRFLOW__SCHEDULER__CATCHUP_BY_DEFAULT": "False",
            # metrics: OpenTelemetry (OTLP/HTTP) to the stack's airflow-metrics bridge, which serves
            # them to Prometheus (hft/devstack/otlp_bridge.py; StatsD would need the statsd package
            # and a StatsD exporter). Deltas, so each task process's counts simply add up; a short
            # export timeout, so a process exiting while the bridge is down does not hang on it.
            # Airflow 3.2 deprecated its otel_host/otel_port for OpenTelemetry's own variables.
            "AIRFLOW__METRICS__OTEL_ON": "True",
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": airflow_metrics_endpoint(settings),
            "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "http/protobuf",
            "OTEL_METRIC_EXPORT_INTERVAL": "5000",
            "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "delta",
            "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT": "2",
            # tagged names only (ti.finish{dag_id,task_id,state}), not also one name per DAG and task
            "AIRFLOW__METRICS__LEGACY_NAMES_ON": "False",
            # the stack's own settings reach every task process
            "HFT_HOME": str(settings.home_dir),
            "HFT_PORT_BASE": str(settings.port_base),
            "HFT_DATA_DIR": str(settings.data_dir),
        }
    )
    return env


def run_airflow(
    settings: Settings,
    *args: str,
    timeout: float | None = None,
    check: bool = True,
    extra_env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run one ``airflow`` CLI command (``airflow <args>``) in this stack's environment."""
    home = airflow_home(settings)
    home.mkdir(parents=True, exist_ok=True)
    env = {**airflow_env(settings), **(extra_env or {})}
    return subprocess.run(
        [str(Path(sys.executable).with_name("airflow")), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=check,
        cwd=REPO_ROOT,
    )


def migrate_metadata(settings: Settings, timeout: float = 600) -> None:
    """Create or upgrade Airflow's metadata tables in the local PostgreSQL (idempotent)."""
    run_airflow(settings, "db", "migrate", timeout=timeout)


_INTEGRITY_SCRIPT = r"""
import json, sys
try:
    from airflow.dag_processing.dagbag import DagBag
except ImportError:  # older layouts
    from airflow.models.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
dags = {}
for dag_id, dag in bag.dags.items():
    dags[dag_id] = {
        "tags": sorted(dag.tags or []),
        "min_retries": min((int(t.retries or 0) for t in dag.tasks), default=0),
        "tasks": sorted(t.task_id for t in dag.tasks),
        "schedule": str(getattr(dag.timetable, "summary", "") or getattr(dag.timetable, "description", "")
                        or type(dag.timetable).__name__),
        "doc_md": bool(dag.doc_md),
        "fileloc": dag.fileloc,
    }
print("@@INTEGRITY@@" + json.dumps({"dags": dags, "import_errors": {k: str(v) for k, v in bag.import_errors.items()}}))
"""


def dag_integrity(settings: Settings, dag_folder: Path = DAGS_FOLDER, timeout: float = 120) -> dict[str, Any]:
    """Load ``dag_folder`` into a DagBag in a fresh interpreter and report DAGs and import errors.

    A fresh interpreter because Airflow reads its configuration once per process, at import.
    Returns ``{"dags": {dag_id: {tags, min_retries, tasks, schedule, doc_md, fileloc}},
    "import_errors": {path: message}}``.
    """
    airflow_home(settings).mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [sys.executable, "-c", _INTEGRITY_SCRIPT, str(dag_folder)],
        env=airflow_env(settings),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO_ROOT,
        check=False,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("@@INTEGRITY@@"):
            report: dict[str, Any] = json.loads(line.removeprefix("@@INTEGRITY@@"))
            return report
    raise RuntimeError(f"DagBag check failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
