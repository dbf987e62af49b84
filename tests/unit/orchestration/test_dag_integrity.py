"""DAG integrity (Astronomer's test_dag_integrity, for Airflow 3): every DAG in dags/ loads with
no import error, has tags, doc_md and retries >= 2 on every task, and `ruff --select AIR` is clean."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hft.config import REPO_ROOT, Settings

EXPECTED = {"validate_market_data", "backfill_features", "retrain_models", "promote_model"}


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Load dags/ into a DagBag in a fresh interpreter (Airflow reads its config once per process)."""
    from hft.devstack.airflow import dag_integrity

    home = tmp_path_factory.mktemp("hft-home")
    return dag_integrity(Settings(home=home, port_base=26500))


def test_dagbag_loads_every_dag_without_import_errors(report: dict) -> None:  # type: ignore[type-arg]
    assert report["import_errors"] == {}
    assert set(report["dags"]) == EXPECTED


def test_every_dag_has_tags_docs_and_retries(report: dict) -> None:  # type: ignore[type-arg]
    for dag_id, info in report["dags"].items():
        assert info["tags"], f"{dag_id} has no tags"
        assert "hft" in info["tags"]
        assert info["doc_md"], f"{dag_id} has no doc_md"
        assert info["min_retries"] >= 2, f"{dag_id}: a task retries fewer than 2 times"


def test_validation_feeds_backfill_and_retraining_feeds_promotion(report: dict) -> None:  # type: ignore[type-arg]
    dags = report["dags"]
    assert dags["validate_market_data"]["schedule"] == "CronDataIntervalTimetable"
    assert dags["validate_market_data"]["tasks"] == [
        "partition",
        "publish",
        "validate_bars",
        "validate_ticks",
    ]
    # the config is checked (plan) before minutes of training start
    assert dags["retrain_models"]["tasks"] == ["plan", "train"]
    assert dags["backfill_features"]["schedule"] == "AssetTriggeredTimetable"
    assert dags["promote_model"]["schedule"] == "AssetTriggeredTimetable"


def test_dag_files_use_one_asset_name_between_producer_and_consumer() -> None:
    validate = (REPO_ROOT / "dags" / "validate_market_data.py").read_text()
    backfill = (REPO_ROOT / "dags" / "backfill_features.py").read_text()
    retrain = (REPO_ROOT / "dags" / "retrain_models.py").read_text()
    promote = (REPO_ROOT / "dags" / "promote_model.py").read_text()
    assert 'Asset("market_data_validated")' in validate
    assert 'Asset("market_data_validated")' in backfill
    assert 'Asset("model_challenger")' in retrain
    assert 'Asset("model_challenger")' in promote


def test_ruff_airflow_rules_are_clean_on_dags() -> None:
    ruff = Path(sys.executable).with_name("ruff")
    proc = subprocess.run(
        [str(ruff), "check", "dags", "--select", "AIR"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dag_files_import_nothing_heavy_at_top_level() -> None:
    heavy = (
        "great_expectations",
        "feast",
        "mlflow",
        "torch",
        "lightgbm",
        "xgboost",
        "pandas",
        "hft.quality",
        "hft.ml",
        "hft.features",
    )
    for path in (REPO_ROOT / "dags").glob("*.py"):
        top = [line for line in path.read_text().splitlines() if line.startswith(("import ", "from "))]
        for line in top:
            assert not any(f" {h}" in line for h in heavy), f"{path.name}: {line}"
