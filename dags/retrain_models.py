"""
### retrain_models

On `HFT_RETRAIN_SCHEDULE` (default weekly; paused until switched on): Optuna-tuned training of
the ensemble on historical bars within a time budget (`hft.ml.train.train_and_register`),
logged to MLflow and registered as a new version with the alias `challenger`. The event on the
asset `model_challenger` starts `promote_model`. Trigger config may override `start`, `end`,
`budget_minutes`, `symbols` and `data` (the tests use a small budget).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import Asset, Metadata, Param, dag, get_current_context, task

from hft.config import get_settings

MODEL_CHALLENGER = Asset("model_challenger")


@dag(
    dag_id="retrain_models",
    schedule=get_settings().retrain_schedule,
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
            None, type=["null", "string"], description="OHLCV CSV file or folder (default data_dir)"
        ),
    },
    doc_md=__doc__,
)
def retrain_models() -> None:
    """Tune, train and register a challenger."""

    @task(outlets=[MODEL_CHALLENGER])
    def train():  # type: ignore[no-untyped-def]
        from hft.ml.train import train_and_register

        settings = get_settings()
        params = get_current_context()["params"]
        uri = train_and_register(
            settings,
            symbols=params.get("symbols") or settings.symbols,
            interval=settings.bar_interval,
            data=params.get("data") or str(settings.data_dir),
            start=params.get("start") or settings.train_start,
            end=params.get("end") or settings.train_end,
            budget_minutes=float(params.get("budget_minutes") or settings.train_budget_minutes),
        )
        print(f"registered challenger {uri}")
        yield Metadata(MODEL_CHALLENGER, extra={"uri": uri})

    train()


retrain_models()
