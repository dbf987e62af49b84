"""The Airflow environment follows MACHINE-NOTES.md and the stack's settings."""

from __future__ import annotations

from pathlib import Path

from hft.config import REPO_ROOT, Settings
from hft.devstack.airflow import admin_passwords_file, airflow_env
from hft.devstack.supervisor import PROCESSES


def test_airflow_env_points_every_part_at_the_stack(tmp_path: Path) -> None:
    s = Settings(home=tmp_path, port_base=30000)
    env = airflow_env(s, base={"PATH": "/usr/bin"})
    assert env["AIRFLOW_HOME"] == str(tmp_path / "airflow")
    pw = s.postgres_password.get_secret_value()  # generated into tmp_path/credentials.json
    assert pw
    assert (
        env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
        == f"postgresql+psycopg2://postgres:{pw}@127.0.0.1:30000/airflow"
    )
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(REPO_ROOT / "dags")
    assert env["AIRFLOW__CORE__PLUGINS_FOLDER"] == str(REPO_ROOT / "plugins")
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:30005/execution/"
    assert env["AIRFLOW__API__PORT"] == "30005"
    assert env["AIRFLOW__API__HOST"] == "127.0.0.1"
    assert env["AIRFLOW__CORE__PARALLELISM"] == "4"
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    assert env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] == "30010"
    assert env["AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"] == "30011"
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] == "admin:admin"
    assert env["HFT_HOME"] == str(tmp_path)
    assert env["HFT_PORT_BASE"] == "30000"
    assert env["PATH"].split(":")[0].endswith("/bin")
    assert env["PATH"].endswith("/usr/bin")
    assert admin_passwords_file(s) == tmp_path / "airflow" / "simple_auth_manager_passwords.json.generated"


def test_hft_up_supervises_airflow_standalone_unless_disabled(tmp_path: Path) -> None:
    spec = next(p for p in PROCESSES if p.name == "airflow")
    assert spec.command(Settings(home=tmp_path))[1:] == ["airflow", "standalone"]
    assert spec.enabled(Settings(home=tmp_path))
    assert not spec.enabled(Settings(home=tmp_path, airflow_enabled=False))
