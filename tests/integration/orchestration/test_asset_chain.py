"""The DAG chain fires by itself under a real Airflow (issue 22 item 3): assets, drift, a failed check.

Airflow runs as ``hft up`` runs it (``hft airflow standalone`` under the project's supervisor) on
the session's real shared data. One validation of the data's latest hour (the scheduler's own
hourly run on a fresh metadata database, else one REST trigger with no config) is the only
start: ``publish`` emits ``market_data_validated`` → ``backfill_features`` (asset-triggered)
backfills the hour and measures PSI against the training window; the week after the 2024-08-05
crash drifts (vol_64 ≈ 0.8) above the default ``HFT_DRIFT_RETRAIN_THRESHOLD`` (0.5), so
``check_drift`` emits ``features_drifted`` → ``retrain_models`` (asset-triggered, outside its
weekly schedule) trains from the store (budget 0.1 min) and emits ``model_challenger`` →
``promote_model`` (asset-triggered) gates it.

Then a failed validation: a negative price put into a stored trade fails ``validate_ticks`` at
once; ``publish`` is ``upstream_failed``, no event is emitted and no backfill runs; the task's
failure message names the check, the trade and the data docs page.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from hft.config import Settings
from tests.integration.orchestration.conftest import BAD_PARTITION
from tests.integration.orchestration.test_rest_triggers import AirflowApi, _wait_for, login

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAGS = ("validate_market_data", "backfill_features", "retrain_models", "promote_model")
ENV = {
    "HFT_TRAIN_START": "2024-07-26",
    "HFT_TRAIN_END": "2024-08-09",
    "HFT_TRAIN_BUDGET_MINUTES": "0.1",
}


class Chain:
    def __init__(self, api: AirflowApi, settings: Settings, started: datetime, model: str) -> None:
        self.api, self.settings, self.started, self.model = api, settings, started, model
        self.timings: dict[str, float] = {}
        self.t0 = time.monotonic()

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        body = self.api.ok("GET", f"/dags/{dag_id}/dagRuns?order_by=run_after&limit=100")

        def since(r: dict[str, Any]) -> datetime:
            times = [r.get(k) for k in ("queued_at", "start_date", "run_after")]
            return max(datetime.fromisoformat(t) for t in times if t)

        return [r for r in body["dag_runs"] if since(r) >= self.started]

    def describe(self) -> str:
        out = []
        for dag_id in DAGS:
            for r in self.runs(dag_id):
                tasks = self.api.tasks(dag_id, r["dag_run_id"])
                out.append(
                    f"{dag_id} {r['dag_run_id']} ({r['run_type']}): {r['state']} "
                    f"{ {t: ti['state'] for t, ti in tasks.items()} }"
                )
                for t, ti in tasks.items():
                    if ti["state"] in ("failed", "up_for_retry"):
                        with contextlib.suppress(Exception):
                            log = self.api.log(dag_id, r["dag_run_id"], t, max(1, int(ti["try_number"])))
                            out.append(f"--- {dag_id}.{t} ---\n{log[-2500:]}")
        return "\n".join(out) or "no DAG run since the module started"

    def finished(
        self, dag_id: str, run_type: str | None = None, after: dict[str, Any] | None = None
    ) -> dict[str, Any] | None:
        """The first finished run (queued after ``after`` started: an event left by an earlier
        ``airflow dags test`` on this metadata database becomes a run too)."""
        for r in self.runs(dag_id):
            if run_type and r["run_type"] != run_type:
                continue
            if after and datetime.fromisoformat(r["run_after"]) < datetime.fromisoformat(after["start_date"]):
                continue
            tasks = self.api.tasks(dag_id, r["dag_run_id"])
            if r["state"] == "failed" or any(ti["state"] == "up_for_retry" for ti in tasks.values()):
                pytest.fail(f"{dag_id} {r['dag_run_id']} failed\n{self.describe()}")
            if r["state"] == "success":
                self.timings[dag_id] = round(time.monotonic() - self.t0, 1)
                return r
        return None

    def wait(self, what: str, check: Any, timeout: float) -> Any:
        try:
            return _wait_for(what, check, timeout, step=3)
        except pytest.fail.Exception as exc:
            pytest.fail(f"{exc}\n{self.describe()}")


@pytest.fixture(scope="module")
def chain(market_data: Settings) -> Iterator[Chain]:
    """Airflow standalone under the project's supervisor on the session's data, logged in, every DAG on."""

    from hft.devstack.supervisor import Supervisor

    model = f"hft-chain-{secrets.token_hex(2)}"
    sup = Supervisor(market_data, names=["airflow"])
    sup.stop()
    started = datetime.now(UTC)
    before = {k: os.environ.get(k) for k in [*ENV, "HFT_MODEL_NAME"]}
    os.environ.update({**ENV, "HFT_MODEL_NAME": model})
    sup.start()
    for k, v in before.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    api = None
    try:
        api = login(market_data)

        def parsed(dag_id: str) -> bool:
            details = api.ok("GET", f"/dags/{dag_id}/details")  # type: ignore[union-attr]
            return (
                bool(details["last_parsed_time"])
                and datetime.fromisoformat(details["last_parsed_time"]) >= started
            )

        for dag_id in DAGS:
            _wait_for(f"{dag_id} parsed", lambda d=dag_id: parsed(d), 180)
        for dag_id in DAGS:
            api.ok("PATCH", f"/dags/{dag_id}", {"is_paused": False})
        yield Chain(api, market_data, started, model)
    finally:
        if api is not None:
            with contextlib.suppress(Exception):
                api.ok("PATCH", "/dags/retrain_models", {"is_paused": True})
        sup.stop()


def test_one_validation_fires_backfill_drift_retrain_and_promotion(chain: Chain) -> None:
    api = chain.api

    def validated() -> dict[str, Any] | None:
        done = chain.finished("validate_market_data")
        if done is None and not chain.runs("validate_market_data") and time.monotonic() - chain.t0 > 90:
            # no scheduled run (this hour's ran under an earlier module): start it as the UI does
            api.trigger("validate_market_data", {"logical_date": None})
        return done

    run = chain.wait("a validate_market_data run succeeded", validated, 300)
    tasks = api.tasks("validate_market_data", run["dag_run_id"])
    assert tasks["publish"]["state"] == "success", chain.describe()
    window = api.xcom("validate_market_data", run["dag_run_id"], "partition")

    backfill = chain.wait(
        "backfill_features ran on the event",
        lambda: chain.finished("backfill_features", "asset_triggered", after=run),
        420,
    )
    part = api.xcom("backfill_features", backfill["dag_run_id"], "partition")
    assert (part["start"], part["end"]) == (window["start"], window["end"])
    assert part["reason"] == "the triggering asset event"
    report = api.xcom("backfill_features", backfill["dag_run_id"], "validate_features")
    assert report["drift"]["vol_64"] > 0.5, report  # the crash week
    btasks = api.tasks("backfill_features", backfill["dag_run_id"])
    assert btasks["check_drift"]["state"] == "success", chain.describe()
    log = api.log("backfill_features", backfill["dag_run_id"], "check_drift")
    assert "drift above 0.5: vol_64" in log, log[-2000:]

    def retrained() -> dict[str, Any] | None:
        started = datetime.fromisoformat(backfill["start_date"])
        runs = [r for r in chain.runs("retrain_models") if r["run_type"] == "asset_triggered"]
        mine = [r for r in runs if datetime.fromisoformat(r["run_after"]) >= started]
        for extra in [r for r in runs if r not in mine[:1]]:
            # an event left by an earlier `dags test`, or a second validation's drift: not this run
            if extra["state"] in ("queued", "running"):
                api.ok("PATCH", f"/dags/retrain_models/dagRuns/{extra['dag_run_id']}", {"state": "failed"})
        return chain.finished("retrain_models", "asset_triggered", after=backfill)

    retrain = chain.wait("retrain_models ran on features_drifted", retrained, 600)
    plan = api.xcom("retrain_models", retrain["dag_run_id"], "plan")
    assert plan["data"] == "store"
    assert plan["trigger"].startswith("drift: drift above 0.5: vol_64"), plan
    assert plan["budget_minutes"] == 0.1

    promote = chain.wait(
        "promote_model ran on model_challenger",
        lambda: chain.finished("promote_model", "asset_triggered", after=retrain),
        300,
    )
    ptasks = api.tasks("promote_model", promote["dag_run_id"])
    assert ptasks["wait_for_live_record"]["state"] == "success"  # live gate off: passes at once
    outcome = api.xcom("promote_model", promote["dag_run_id"], "promote")
    assert outcome["reason"], outcome  # promoted or kept, the gate says why
    print(f"chain timings (s since Airflow answered): {chain.timings}; promotion: {outcome}")


def test_a_failed_validation_stops_the_chain_and_says_why(chain: Chain) -> None:
    from hft.storage import db

    api = chain.api
    start, end = (datetime.fromisoformat(BAD_PARTITION[k]) for k in ("start", "end"))
    with db.connect(chain.settings) as conn:
        trade_id, price = conn.execute(
            "SELECT trade_id, price FROM market.ticks WHERE symbol = 'BTCUSDT' AND trade_time >= %s "
            "AND trade_time < %s ORDER BY trade_id LIMIT 1 OFFSET 10",
            (start, end),
        ).fetchone()
        conn.execute(
            "UPDATE market.ticks SET price = -price WHERE symbol = 'BTCUSDT' AND trade_id = %s", (trade_id,)
        )
        conn.commit()
    try:
        backfills_before = {r["dag_run_id"] for r in chain.runs("backfill_features")}
        run_id = api.trigger("validate_market_data", {"logical_date": None, "conf": BAD_PARTITION})
        run = api.wait("validate_market_data", run_id, timeout=300)
    finally:
        with db.connect(chain.settings) as conn:
            conn.execute(
                "UPDATE market.ticks SET price = %s WHERE symbol = 'BTCUSDT' AND trade_id = %s",
                (price, trade_id),
            )
            conn.commit()
    tasks = api.tasks("validate_market_data", run_id)
    assert run["state"] == "failed", chain.describe()
    assert tasks["validate_ticks"]["state"] == "failed"
    assert tasks["validate_ticks"]["try_number"] == 1  # no retry: waiting does not fix data
    assert tasks["publish"]["state"] == "upstream_failed"  # so no market_data_validated event
    log = api.log("validate_market_data", run_id, "validate_ticks")
    assert "FAILED" in log, log[-3000:]
    assert "price" in log
    assert f"BTCUSDT:{trade_id}" in log or str(trade_id) in log, log[-3000:]
    assert "data docs: file://" in log
    time.sleep(15)  # an event would have queued a backfill run by now
    new = [r for r in chain.runs("backfill_features") if r["dag_run_id"] not in backfills_before]
    assert not new, f"a backfill ran after the failed validation: {new}"
