"""
### retrain_models

On `HFT_RETRAIN_SCHEDULE` (default weekly; paused until switched on) **or** whenever the asset
`features_drifted` gets an event (`AssetOrTimeSchedule`): `backfill_features` emits it when a
feature's PSI against the training window is above `HFT_DRIFT_RETRAIN_THRESHOLD`, so drift
retrains outside the schedule. Optuna-tuned training of the ensemble within a time budget,
logged to MLflow and registered as a new version with the alias `challenger`. The event on the
asset `model_challenger` starts `promote_model`.

Idempotent per run: the registered version is tagged with the Airflow run
(`airflow_run_id`); a retried `train` task that finds its run's version already registered
hands that version on instead of training and registering another one.

It trains on what the system collected: without `data` the training frame comes from the
store (`hft.ml.train.train_and_register_from_store`, as `hft train` without `--data`):
bars from `market.bars` (loaded history and the bars the tick ingestor built from live
trades), features from Feast's offline store (`get_historical_features` with the model's
FeatureService, one entity row per symbol and bar close), labels from the bars; bars of the
window without features are backfilled first by the feature backfill. With `data` (an OHLCV
CSV file or folder) it trains on that file (`hft.ml.train.train_and_register`).

Trigger config may override `start`, `end`, `budget_minutes`, `symbols` and `data` (the tests
use a small budget); the run needs no data interval, so a manual or REST trigger with
`logical_date: null` and no config trains on the settings' window from the store.

`plan` checks the config before any training starts and logs what will be trained: `start` and
`end` ISO 8601 dates with `end` after `start`, `budget_minutes` > 0, `symbols` a non-empty list
of names, `data` an existing file or folder (or a URL; `store` or none: the database). A bad config, or an unknown key, fails
the run at once (no retry) with a message saying what is wrong. A scheduled run more than an
hour after its slot (Airflow schedules the latest passed slot when the DAG is switched on) is
skipped, saying so: switched on, the DAG waits for its next slot.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import (
    Asset,
    AssetOrTimeSchedule,
    CronTriggerTimetable,
    Metadata,
    Param,
    dag,
    get_current_context,
    task,
)

from hft.config import get_settings

FEATURES_DRIFTED = Asset("features_drifted")
MODEL_CHALLENGER = Asset("model_challenger")
CONF_KEYS = ("start", "end", "budget_minutes", "symbols", "data")


def _plan() -> dict[str, object]:
    """Resolve the run's config against the settings; raise AirflowFailException on a bad one."""
    from pathlib import Path

    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    from hft.ml.dataset import STORE_DATA
    from hft.quality.partition import PartitionError, check_conf_keys, missed_slot, parse_time, run_facts

    settings = get_settings()
    context = get_current_context()
    late = missed_slot(context, datetime.now(UTC))
    if late is not None:
        raise AirflowSkipException(late)  # no training, no event: promote_model does not run
    params = context["params"]
    try:
        conf, _, _ = run_facts(context)
        check_conf_keys(conf, CONF_KEYS)
        start = str(params.get("start") or settings.train_start)
        end = str(params.get("end") or settings.train_end)
        if parse_time(end, "end") <= parse_time(start, "start"):
            raise PartitionError(f"end {end} is not after start {start}")
        budget = params.get("budget_minutes")
        budget = float(settings.train_budget_minutes if budget is None else budget)
        if budget <= 0:
            raise PartitionError(f"budget_minutes must be > 0, got {budget}")
        symbols = params.get("symbols") or list(settings.symbols)
        if not all(isinstance(s, str) and s.strip() for s in symbols):
            raise PartitionError(f"symbols must be a list of symbol names, got {symbols!r}")
        data = str(params.get("data") or STORE_DATA)  # none: market.bars + Feast's offline store
        if data != STORE_DATA and "://" not in data and not Path(data).exists():
            raise PartitionError(
                f"data {data!r} does not exist (an OHLCV CSV file or folder; leave it out to train "
                "from the store)"
            )
    except PartitionError as exc:
        raise AirflowFailException(f"bad trigger config: {exc}") from None
    plan: dict[str, object] = {
        "symbols": [s.strip().upper() for s in symbols],
        "interval": settings.bar_interval,
        "data": data,
        "start": start,
        "end": end,
        "budget_minutes": budget,
    }
    events = (context.get("triggering_asset_events") or {}).get(FEATURES_DRIFTED) or []
    if events:
        plan["trigger"] = f"drift: {events[-1].extra.get('why', events[-1].extra)}"
    print(f"training plan: {plan}")
    return plan


def _registered_by(settings: object, model_name: str, run_key: str) -> str | None:
    """The URI of the version this Airflow run registered already (a retried task), or None."""
    from mlflow import MlflowClient

    from hft.config import use_mlflow

    client = MlflowClient(tracking_uri=use_mlflow(settings))  # type: ignore[arg-type]
    for v in client.search_model_versions(f"name='{model_name}'"):
        if (v.tags or {}).get("airflow_run_id") == run_key:
            return f"models:/{model_name}/{v.version}"
    return None


@dag(
    dag_id="retrain_models",
    schedule=AssetOrTimeSchedule(
        # with catchup=False Airflow schedules the latest passed slot when the DAG is switched
        # on (run_immediately has no effect with a start_date); `plan` skips a run more than an
        # hour late (hft.quality.partition.missed_slot), so switched on, the DAG waits for the next slot
        timetable=CronTriggerTimetable(get_settings().retrain_schedule, timezone="UTC"),
        assets=[FEATURES_DRIFTED],
    ),
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    is_paused_upon_creation=True,
    tags=["hft", "ml"],
    default_args={
        "owner": "hft",
        "retries": 2,
        "retry_delay": timedelta(minutes=5),
        "retry_exponential_backoff": True,
    },
    params={
        "start": Param(None, type=["null", "string"], description="Training data start (default settings)"),
        "end": Param(None, type=["null", "string"], description="Training data end (default settings)"),
        "budget_minutes": Param(None, type=["null", "number"], description="Tuning time budget"),
        "symbols": Param(None, type=["null", "array"], description="Symbols (default settings)"),
        "data": Param(
            None,
            type=["null", "string"],
            description="OHLCV CSV file or folder (default: the store, market.bars + Feast)",
        ),
    },
    doc_md=__doc__,
)
def retrain_models() -> None:
    """Tune, train and register a challenger."""

    @task
    def plan() -> dict[str, object]:
        return _plan()

    @task(outlets=[MODEL_CHALLENGER])
    def train(spec: dict[str, object]):  # type: ignore[no-untyped-def]
        from mlflow import MlflowClient

        from hft.config import use_mlflow
        from hft.ml.dataset import is_store
        from hft.ml.train import train_and_register, train_and_register_from_store

        settings = get_settings()
        run = get_current_context()["dag_run"]
        run_key = f"{run.dag_id}/{run.run_id}"
        uri = _registered_by(settings, settings.model_name, run_key)
        if uri is not None:
            print(f"this run registered {uri} already (a retry): not training again")
            yield Metadata(MODEL_CHALLENGER, extra={"uri": uri})
            return
        symbols = list(spec["symbols"])  # type: ignore[call-overload]
        budget = float(spec["budget_minutes"])  # type: ignore[arg-type]
        interval, start, end = str(spec["interval"]), str(spec["start"]), str(spec["end"])
        if is_store(str(spec["data"])):
            uri = train_and_register_from_store(settings, symbols, interval, start, end, budget)
        else:
            uri = train_and_register(
                settings, symbols, interval, str(spec["data"]), start, end, budget_minutes=budget
            )
        name, version = uri.removeprefix("models:/").rsplit("/", 1)
        MlflowClient(tracking_uri=use_mlflow(settings)).set_model_version_tag(
            name, version, "airflow_run_id", run_key
        )
        print(f"registered challenger {uri}")
        yield Metadata(MODEL_CHALLENGER, extra={"uri": uri})

    train(plan())


retrain_models()
