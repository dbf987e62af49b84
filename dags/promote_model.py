"""
### promote_model

After each retraining (asset `model_challenger`), or by hand: the promotion gate of
`hft promote` (`hft.ml.promote.promote`). The challenger becomes `champion` only when its
out-of-sample metrics beat the champion's; otherwise the champion stays and the reason is in
the task log and the returned decision. The API polls the `champion` alias and loads a new
champion by itself.

Triggered by hand (UI or `POST /api/v2/dags/promote_model/dagRuns`, with or without
`logical_date`) it gates the settings' model; config `{"model_name": "..."}` gates another
registered model. An unknown config key fails the run at once, saying which keys it takes.

**The live record first.** With `HFT_SHADOW_MIN_DECISIONS` > 0 the gate also needs the
challenger's live (shadow) record beside the champion. `wait_for_live_record` (a sensor in
reschedule mode: it holds no worker slot between pokes, every 30 s for up to 2 days) waits until
the API has scored that many closed bars with both, logging the count at each poke; then
`promote` gates. Without a champion, or with the live gate off, it passes at once. Past the 2
days the sensor times out (the run fails, saying so) and the challenger stays a challenger. A bad
config fails the sensor at once, before any waiting.

Idempotent: gating the same challenger again gives the same answer; once it is champion the
run says so and changes nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import Asset, Param, PokeReturnValue, dag, get_current_context, task

from hft.config import get_settings

MODEL_CHALLENGER = Asset("model_challenger")
CONF_KEYS = ("model_name",)


@dag(
    dag_id="promote_model",
    schedule=[MODEL_CHALLENGER],
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    is_paused_upon_creation=False,
    tags=["hft", "ml"],
    default_args={
        "owner": "hft",
        "retries": 2,
        "retry_delay": timedelta(minutes=2),
        "retry_exponential_backoff": True,
    },
    params={
        "model_name": Param(None, type=["null", "string"], description="Registered model (default settings)"),
    },
    doc_md=__doc__,
)
def promote_model() -> None:
    """Promote the challenger when it beats the champion."""

    # no soft_fail: it would turn a bad config (AirflowFailException) into a skip and a green run
    @task.sensor(poke_interval=30, timeout=2 * 24 * 3600, mode="reschedule")
    def wait_for_live_record() -> PokeReturnValue:
        from airflow.sdk.exceptions import AirflowFailException

        from hft.ml.promote import live_record_ready
        from hft.quality.partition import PartitionError, check_conf_keys, run_facts

        context = get_current_context()
        try:
            check_conf_keys(run_facts(context)[0], CONF_KEYS)
        except PartitionError as exc:
            raise AirflowFailException(f"bad trigger config: {exc}") from None
        ready, why = live_record_ready(get_settings(), context["params"].get("model_name") or None)
        print(("ready: " if ready else "waiting: ") + why)
        return PokeReturnValue(is_done=ready, xcom_value={"ready": ready, "why": why})

    @task
    def promote() -> dict[str, object]:
        from airflow.sdk.exceptions import AirflowFailException

        from hft.ml.promote import promote as gate
        from hft.quality.partition import PartitionError, check_conf_keys, run_facts

        context = get_current_context()
        try:
            check_conf_keys(run_facts(context)[0], CONF_KEYS)
        except PartitionError as exc:
            raise AirflowFailException(f"bad trigger config: {exc}") from None
        decision = gate(get_settings(), model_name=context["params"].get("model_name") or None)
        outcome = {"promoted": bool(decision.promoted), "reason": str(decision.reason)}
        print(("PROMOTED: " if decision.promoted else "KEPT CHAMPION: ") + outcome["reason"])
        return outcome

    wait_for_live_record() >> promote()


promote_model()
