"""The DAG chain as one data-aware flow (issue 22 item 3), read off the DagBag Airflow builds.

validate_market_data --market_data_validated--> backfill_features --features_drifted-->
retrain_models --model_challenger--> promote_model: each producer task declares the asset as an
outlet, each consumer schedules on it; retrain_models keeps its time schedule beside the asset.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hft.config import REPO_ROOT, Settings
from hft.quality.drift import retrain_decision

_SCRIPT = r"""
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
out = {}
for dag_id, dag in bag.dags.items():
    tt = dag.timetable
    def names(c):
        if c is None:
            return []
        if hasattr(c, "objects"):
            return [n for o in c.objects for n in names(o)]
        return [c.name]
    assets = sorted(names(getattr(tt, "asset_condition", None)))
    out[dag_id] = {
        "timetable": type(tt).__name__,
        "summary": str(getattr(tt, "summary", "")),
        "inner": type(getattr(tt, "timetable", None)).__name__,
        "schedule_assets": assets,
        "outlets": {t.task_id: sorted(a.name for a in t.outlets) for t in dag.tasks if t.outlets},
        "upstream": {t.task_id: sorted(t.upstream_task_ids) for t in dag.tasks},
        "paused_on_creation": dag.is_paused_upon_creation,
        "sensors": {t.task_id: getattr(t, "mode", None) for t in dag.tasks if hasattr(t, "poke_interval")},
    }
print("@@CHAIN@@" + json.dumps({"dags": out, "errors": {k: str(v) for k, v in bag.import_errors.items()}}))
"""


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from hft.devstack.airflow import DAGS_FOLDER, airflow_env, airflow_home

    settings = Settings(home=tmp_path_factory.mktemp("hft-home"), port_base=26550)
    airflow_home(settings).mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(DAGS_FOLDER)],
        env=airflow_env(settings),
        capture_output=True,
        text=True,
        timeout=180,
        cwd=REPO_ROOT,
        check=False,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("@@CHAIN@@"):
            report: dict[str, Any] = json.loads(line.removeprefix("@@CHAIN@@"))
            assert report["errors"] == {}
            return report["dags"]  # type: ignore[no-any-return]
    raise AssertionError(f"DagBag failed (exit {proc.returncode}): {proc.stderr[-3000:]}")


def test_each_link_is_an_outlet_of_the_producer_and_the_schedule_of_the_consumer(chain: dict) -> None:  # type: ignore[type-arg]
    links = [
        ("validate_market_data", "publish", "market_data_validated", "backfill_features"),
        ("backfill_features", "check_drift", "features_drifted", "retrain_models"),
        ("retrain_models", "train", "model_challenger", "promote_model"),
    ]
    for producer, task, asset, consumer in links:
        assert asset in chain[producer]["outlets"].get(task, []), f"{producer}.{task} does not emit {asset}"
        assert asset in chain[consumer]["schedule_assets"], f"{consumer} does not schedule on {asset}"
    # nothing else feeds a consumer: one asset per link
    assert chain["backfill_features"]["schedule_assets"] == ["market_data_validated"]
    assert chain["retrain_models"]["schedule_assets"] == ["features_drifted"]
    assert chain["promote_model"]["schedule_assets"] == ["model_challenger"]
    # the backfill also announces its rows (for anything downstream that wants every window)
    assert chain["backfill_features"]["outlets"]["backfill"] == ["bar_features_backfilled"]


def test_retrain_runs_on_its_time_schedule_or_on_drift(chain: dict) -> None:  # type: ignore[type-arg]
    retrain = chain["retrain_models"]
    assert retrain["timetable"] == "AssetOrTimeSchedule"
    assert retrain["inner"] == "CronTriggerTimetable"
    assert retrain["paused_on_creation"] is True  # CPU-heavy: switched on by the operator
    assert chain["validate_market_data"]["timetable"] == "CronDataIntervalTimetable"
    assert chain["backfill_features"]["timetable"] == "AssetTriggeredTimetable"
    assert chain["promote_model"]["timetable"] == "AssetTriggeredTimetable"


def test_a_failed_check_stops_the_chain_before_its_event(chain: dict) -> None:  # type: ignore[type-arg]
    # publish needs both validations (default trigger rule all_success): a failed one, no event
    assert chain["validate_market_data"]["upstream"]["publish"] == [
        "partition",
        "validate_bars",
        "validate_ticks",
    ]
    backfill = chain["backfill_features"]["upstream"]
    assert backfill["validate_features"] == ["backfill", "partition"]
    assert backfill["check_drift"] == ["partition", "validate_features"]
    # training is planned (config checked) before it starts; promotion waits for the live record
    assert chain["retrain_models"]["upstream"]["train"] == ["plan"]
    assert chain["promote_model"]["upstream"]["promote"] == ["wait_for_live_record"]
    assert chain["promote_model"]["sensors"] == {"wait_for_live_record": "reschedule"}


@pytest.mark.parametrize(
    ("psi", "threshold", "retrain", "says"),
    [
        ({"vol_64": 0.82, "atr_14": 0.52, "rsi_14": 0.01}, 0.5, True, "vol_64 0.820, atr_14 0.520"),
        ({"vol_64": 0.3, "rsi_14": 0.01}, 0.5, False, "the largest PSI is vol_64 0.300"),
        ({"vol_64": 0.5}, 0.5, False, "no drift above 0.5"),  # at the threshold: not above it
        ({"vol_64": math.nan}, 0.1, False, "not measured"),
        ({}, 0.1, False, "not measured"),
    ],
)
def test_drift_decision(psi: dict[str, float], threshold: float, retrain: bool, says: str) -> None:
    got, why = retrain_decision(psi, threshold)
    assert got is retrain
    assert says in why


def test_drift_threshold_is_a_setting_next_to_the_psi_warning() -> None:
    s = Settings(home=Path("/tmp/unused"), port_base=26551)
    assert s.drift_retrain_threshold >= s.psi_threshold  # a retrain takes more than a warning
    assert "HFT_DRIFT_RETRAIN_THRESHOLD" in (REPO_ROOT / ".env.example").read_text()
