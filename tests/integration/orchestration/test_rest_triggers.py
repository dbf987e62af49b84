"""Every DAG triggered through Airflow's public REST API the way the UI's trigger button does it.

Airflow runs as ``hft up`` runs it: ``hft airflow standalone`` (api-server, scheduler,
dag-processor, triggerer, LocalExecutor) under the project's supervisord, on the test stack that
holds the real shared data of the session fixture. The test logs in as ``hft airflow login``
says (the admin password Airflow generated into ``admin_passwords_file``; ``POST /auth/token``)
and posts ``POST /api/v2/dags/{dag_id}/dagRuns`` with ``{"logical_date": null}`` (a run without
a data interval: its context has no ``data_interval_start``), with and without a config.

All runs are triggered up front (each DAG runs one at a time, ``max_active_runs=1``; the four
DAGs run side by side), then each test waits for its own. Full training takes minutes of CPU,
so the retrain run without a config is followed until its first task (``plan``, where the
config and the missing data interval are resolved) succeeded and training started; the test
then marks the run failed through the API, as an operator would.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from hft.config import Settings

pytestmark = pytest.mark.integration

FINISHED = {"success", "failed"}


class AirflowApi:
    """A thin client of Airflow 3's public REST API with the admin's token."""

    def __init__(self, base: str, token: str) -> None:
        self.base = base
        self.http = httpx.Client(
            base_url=f"{base}/api/v2", headers={"Authorization": f"Bearer {token}"}, timeout=60
        )

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        return self.http.request(method, path, json=body)

    def ok(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        r = self.call(method, path, body)
        assert r.status_code < 300, f"{method} {path} -> {r.status_code}: {r.text[:2000]}"
        return r.json() if r.content else None

    def trigger(self, dag_id: str, body: dict[str, Any]) -> str:
        return str(self.ok("POST", f"/dags/{dag_id}/dagRuns", body)["dag_run_id"])

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        run: dict[str, Any] = self.ok("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
        return run

    def tasks(self, dag_id: str, run_id: str) -> dict[str, dict[str, Any]]:
        body = self.ok("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
        return {ti["task_id"]: ti for ti in body["task_instances"]}

    def wait(self, dag_id: str, run_id: str, timeout: float = 300) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            run = self.run(dag_id, run_id)
            if run["state"] in FINISHED:
                return run
            if time.monotonic() > deadline:
                states = {t: ti["state"] for t, ti in self.tasks(dag_id, run_id).items()}
                pytest.fail(f"{dag_id} {run_id} still {run['state']} after {timeout:.0f} s: {states}")
            time.sleep(2)

    def xcom(self, dag_id: str, run_id: str, task_id: str) -> Any:
        entry = self.ok(
            "GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value"
        )
        value = entry["value"]
        return json.loads(value) if isinstance(value, str) else value

    def log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}?full_content=true"
        return json.dumps(self.ok("GET", path))


def _wait_for(what: str, check: Any, timeout: float, step: float = 2.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except (httpx.HTTPError, OSError, ValueError, KeyError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:.0f} s")
        time.sleep(step)


def login(settings: Settings) -> AirflowApi:
    """Wait for Airflow's api-server and the admin password it generated; log in over REST."""
    from hft.devstack.airflow import admin_passwords_file, airflow_url

    base = airflow_url(settings)
    _wait_for(
        "Airflow's api-server",
        lambda: httpx.get(f"{base}/api/v2/monitor/health", timeout=5).is_success,
        420,
    )
    user = settings.airflow_admin_user
    password = _wait_for(
        "the generated admin password",
        lambda: json.loads(admin_passwords_file(settings).read_text()).get(user),
        60,
    )
    token = httpx.post(f"{base}/auth/token", json={"username": user, "password": password}, timeout=30)
    assert token.status_code == 201, token.text
    return AirflowApi(base, token.json()["access_token"])


@dataclass
class Triggered:
    api: AirflowApi
    settings: Settings
    started: datetime
    empty_window: tuple[datetime, datetime]
    runs: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (dag_id, run_id)
    timings: dict[str, float] = field(default_factory=dict)


@pytest.fixture(scope="module")
def airflow(market_data: Settings) -> Iterator[Triggered]:
    """Airflow standalone under the project's supervisor, logged in, every run of this module triggered."""
    from hft.devstack.supervisor import Supervisor

    sup = Supervisor(market_data, names=["airflow"])
    sup.stop()  # a supervisor left by an earlier test runs other programs
    t0 = time.monotonic()
    started = datetime.now(UTC)
    # the shared data's crash week drifts above the default threshold: the backfill runs here
    # would start full retrainings (features_drifted); test_asset_chain covers that link
    drift_before = os.environ.get("HFT_DRIFT_RETRAIN_THRESHOLD")
    os.environ["HFT_DRIFT_RETRAIN_THRESHOLD"] = "1e9"
    sup.start()
    if drift_before is None:
        os.environ.pop("HFT_DRIFT_RETRAIN_THRESHOLD")
    else:
        os.environ["HFT_DRIFT_RETRAIN_THRESHOLD"] = drift_before
    try:
        api = login(market_data)
        triggered = Triggered(api, market_data, started, _before_the_data(market_data))
        triggered.timings["api_up_s"] = time.monotonic() - t0

        def parsed(dag_id: str) -> bool:
            # the dag-processor has parsed this checkout's file (not a version serialized earlier)
            details = api.ok("GET", f"/dags/{dag_id}/details")
            return (
                bool(details["last_parsed_time"])
                and datetime.fromisoformat(details["last_parsed_time"]) >= started
            )

        for dag_id in ("validate_market_data", "backfill_features", "retrain_models", "promote_model"):
            _wait_for(f"{dag_id} parsed", lambda d=dag_id: parsed(d), 180)
        triggered.timings["dags_parsed_s"] = time.monotonic() - t0
        for dag_id in ("validate_market_data", "backfill_features", "promote_model"):
            api.ok("PATCH", f"/dags/{dag_id}", {"is_paused": False})

        runs = triggered.runs
        # retrain_models is paused on creation; its runs are queued before it is switched on
        runs["retrain_no_conf"] = ("retrain_models", api.trigger("retrain_models", {"logical_date": None}))
        runs["retrain_bad_conf"] = (
            "retrain_models",
            api.trigger(
                "retrain_models", {"logical_date": None, "conf": {"start": "2025-08-01", "end": "2025-07-01"}}
            ),
        )
        api.ok("PATCH", "/dags/retrain_models", {"is_paused": False})
        # backfill first: validation runs that publish queue asset-triggered backfill runs behind it
        runs["backfill_no_conf"] = (
            "backfill_features",
            api.trigger("backfill_features", {"logical_date": None}),
        )
        # the UI's trigger form posts logical_date null and the form's conf, unset params as null
        runs["validate_ui_form"] = (
            "validate_market_data",
            api.trigger("validate_market_data", {"logical_date": None, "conf": {"start": None, "end": None}}),
        )
        runs["validate_empty_window"] = (
            "validate_market_data",
            api.trigger(
                "validate_market_data",
                {
                    "logical_date": None,
                    "conf": {
                        "start": triggered.empty_window[0].isoformat(),
                        "end": triggered.empty_window[1].isoformat(),
                    },
                },
            ),
        )
        runs["validate_bad_conf"] = (
            "validate_market_data",
            api.trigger(
                "validate_market_data", {"logical_date": None, "conf": {"start": "2024-08-09T00:00:00Z"}}
            ),
        )
        # what the hourly schedule does on the replay: a wall-clock hour that holds no data
        hour = started.replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
        runs["validate_wall_clock_hour"] = (
            "validate_market_data",
            api.trigger(
                "validate_market_data",
                {
                    "dag_run_id": f"wall-clock-{uuid.uuid4().hex[:8]}",
                    "logical_date": started.isoformat(),
                    "data_interval_start": hour.isoformat(),
                    "data_interval_end": (hour + timedelta(hours=1)).isoformat(),
                },
            ),
        )
        runs["promote_no_conf"] = ("promote_model", api.trigger("promote_model", {"logical_date": None}))
        runs["promote_unknown_key"] = (
            "promote_model",
            api.trigger("promote_model", {"logical_date": None, "conf": {"model": "hft-ensemble"}}),
        )
        triggered.timings["triggered_s"] = time.monotonic() - t0
        yield triggered
    finally:
        if "api" in locals():
            # as created: a retrain_models left switched on trains under the next module's Airflow
            with contextlib.suppress(Exception):
                api.ok("PATCH", "/dags/retrain_models", {"is_paused": True})
        sup.stop()
        print(f"airflow REST trigger timings: {triggered.timings if 'triggered' in locals() else {}}")


def _before_the_data(settings: Settings) -> tuple[datetime, datetime]:
    """An hour before the first stored bar or tick: a window with no data that none is expected in."""
    from hft.storage import db

    with db.connect(settings) as conn:
        first = conn.execute(
            "SELECT least((SELECT min(open_time) FROM market.bars), (SELECT min(trade_time) FROM market.ticks))"
        ).fetchone()[0]
    start = first.astimezone(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    return start, start + timedelta(hours=1)


def _data_hour(settings: Settings) -> tuple[datetime, datetime]:
    """The latest complete hour of the stored data's time line, straight from market.ticks."""
    from hft.storage import db

    with db.connect(settings) as conn:
        latest = conn.execute(
            "SELECT max(trade_time) FROM market.ticks WHERE symbol = ANY(%s)", (list(settings.symbols),)
        ).fetchone()[0]
    end = latest.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return end - timedelta(hours=1), end


def _runs_for(settings: Settings, start: datetime, end: datetime) -> dict[str, dict[str, Any]]:
    from hft.quality.validate import read_runs

    out: dict[str, dict[str, Any]] = {}
    for row in read_runs(settings, limit=50):  # newest first
        if datetime.fromisoformat(row["start"]) == start and datetime.fromisoformat(row["end"]) == end:
            out.setdefault(row["kind"], row)
    return out


def test_retrain_without_conf_plans_from_settings_and_bad_conf_fails_at_once(airflow: Triggered) -> None:
    api = airflow.api
    s = airflow.settings
    dag_id, run_id = airflow.runs["retrain_no_conf"]

    mine = {r for d, r in airflow.runs.values() if d == dag_id}

    def planned() -> dict[str, Any] | None:
        # switching the weekly DAG on makes the scheduler start the latest week's full retraining
        # at once (catchup=False): stop it, it is not this test's run and would hold the CPU
        for run in api.ok("GET", f"/dags/{dag_id}/dagRuns?state=queued&state=running")["dag_runs"]:
            if run["dag_run_id"] not in mine:
                api.ok("PATCH", f"/dags/{dag_id}/dagRuns/{run['dag_run_id']}", {"state": "failed"})
        tasks = api.tasks(dag_id, run_id)
        assert tasks["plan"]["state"] not in {"failed", "upstream_failed", "up_for_retry"}, tasks["plan"]
        return tasks if tasks["plan"]["state"] == "success" else None

    tasks = _wait_for("retrain_models' plan task succeeded", planned, 240)
    plan = api.xcom(dag_id, run_id, "plan")
    assert plan["start"] == s.train_start
    assert plan["end"] == s.train_end
    assert plan["budget_minutes"] == s.train_budget_minutes
    assert plan["symbols"] == list(s.symbols)
    # full training takes minutes of CPU: stop it here, as an operator would from the UI
    assert tasks["train"]["state"] in {None, "scheduled", "queued", "running"}, tasks["train"]
    api.ok("PATCH", f"/dags/{dag_id}/dagRuns/{run_id}", {"state": "failed"})

    # a config the Params' types reject never becomes a run
    r = api.call(
        "POST", f"/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": {"budget_minutes": "soon"}}
    )
    assert r.status_code == 400, r.text
    assert "budget_minutes" in r.text

    dag_id, run_id = airflow.runs["retrain_bad_conf"]
    run = api.wait(dag_id, run_id)
    tasks = api.tasks(dag_id, run_id)
    assert run["state"] == "failed"
    assert tasks["plan"]["try_number"] == 1
    assert tasks["train"]["state"] == "upstream_failed"
    log = api.log(dag_id, run_id, "plan")
    assert "bad trigger config: end 2025-07-01 is not after start 2025-08-01" in log, log[-3000:]


def test_validate_without_conf_and_null_logical_date_validates_the_datas_latest_hour(
    airflow: Triggered,
) -> None:
    api = airflow.api
    dag_id, run_id = airflow.runs["validate_ui_form"]
    run = api.wait(dag_id, run_id)
    states = {t: ti["state"] for t, ti in api.tasks(dag_id, run_id).items()}
    assert run["state"] == "success", states
    assert run["logical_date"] is None
    assert run["data_interval_start"] is None
    start, end = _data_hour(airflow.settings)
    part = api.xcom(dag_id, run_id, "partition")
    assert (datetime.fromisoformat(part["start"]), datetime.fromisoformat(part["end"])) == (start, end)
    assert "latest complete hour of the stored data" in part["reason"]
    assert states == {
        "partition": "success",
        "validate_ticks": "success",
        "validate_bars": "success",
        "publish": "success",
    }
    results = _runs_for(airflow.settings, start, end)
    assert results["ticks"]["rows"] > 0, results["ticks"]["summary"]
    assert results["bars"]["rows"] == 8, results["bars"]["summary"]  # 4 bars of 15m per symbol
    assert results["ticks"]["success"]
    assert not results["ticks"]["skipped"]


def test_scheduled_wall_clock_hour_without_data_validates_the_data_instead_of_failing(
    airflow: Triggered,
) -> None:
    api = airflow.api
    dag_id, run_id = airflow.runs["validate_wall_clock_hour"]
    run = api.wait(dag_id, run_id)
    assert run["state"] == "success", {t: ti["state"] for t, ti in api.tasks(dag_id, run_id).items()}
    part = api.xcom(dag_id, run_id, "partition")
    assert (datetime.fromisoformat(part["start"]), datetime.fromisoformat(part["end"])) == _data_hour(
        airflow.settings
    )
    assert "holds none" in part["reason"]


def test_validate_on_an_empty_window_succeeds_as_nothing_to_validate(airflow: Triggered) -> None:
    api = airflow.api
    dag_id, run_id = airflow.runs["validate_empty_window"]
    run = api.wait(dag_id, run_id)
    states = {t: ti["state"] for t, ti in api.tasks(dag_id, run_id).items()}
    assert run["state"] == "success", states
    # nothing validated: no asset event, so no backfill of an empty window
    assert states["publish"] == "skipped"
    assert states["validate_ticks"] == states["validate_bars"] == "success"
    results = _runs_for(airflow.settings, *airflow.empty_window)
    for kind in ("ticks", "bars"):
        assert results[kind]["success"]
        assert results[kind]["rows"] == 0
        assert results[kind]["skipped"].startswith(
            f"no {'15m bars' if kind == 'bars' else 'ticks'} of BTCUSDT"
        )
        assert "nothing to validate" in results[kind]["summary"]


def test_validate_with_half_a_window_fails_at_once_saying_what_is_missing(airflow: Triggered) -> None:
    api = airflow.api
    dag_id, run_id = airflow.runs["validate_bad_conf"]
    run = api.wait(dag_id, run_id)
    tasks = api.tasks(dag_id, run_id)
    assert run["state"] == "failed"
    assert tasks["partition"]["state"] == "failed"
    assert tasks["partition"]["try_number"] == 1  # no retry: a config does not heal by waiting
    log = api.log(dag_id, run_id, "partition")
    assert "bad trigger config: the config gives start but no end" in log, log[-3000:]
    assert "KeyError" not in log


def test_backfill_without_conf_and_null_logical_date_backfills_the_datas_latest_hour(
    airflow: Triggered,
) -> None:
    api = airflow.api
    dag_id, run_id = airflow.runs["backfill_no_conf"]
    run = api.wait(dag_id, run_id, timeout=360)
    assert run["state"] == "success", {t: ti["state"] for t, ti in api.tasks(dag_id, run_id).items()}
    part = api.xcom(dag_id, run_id, "partition")
    assert (datetime.fromisoformat(part["start"]), datetime.fromisoformat(part["end"])) == _data_hour(
        airflow.settings
    )
    assert api.xcom(dag_id, run_id, "backfill") == 8  # four 15m bars per symbol


def test_promote_with_and_without_conf(airflow: Triggered) -> None:
    api = airflow.api
    dag_id, run_id = airflow.runs["promote_no_conf"]
    run = api.wait(dag_id, run_id, timeout=360)
    assert run["state"] == "success", api.log(dag_id, run_id, "promote")[-3000:]
    decision = api.xcom(dag_id, run_id, "promote")
    assert decision["reason"]
    dag_id, run_id = airflow.runs["promote_unknown_key"]
    run = api.wait(dag_id, run_id)
    assert run["state"] == "failed"
    # the first task (the live-record sensor) checks the config: it fails at once, promote never runs
    tasks = api.tasks(dag_id, run_id)
    assert tasks["wait_for_live_record"]["try_number"] == 1
    assert tasks["promote"]["state"] == "upstream_failed"
    log = api.log(dag_id, run_id, "wait_for_live_record")
    assert "unknown config key 'model': this DAG takes model_name" in log, log[-3000:]
