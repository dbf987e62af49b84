"""
### backfill_features

Runs after each validated partition (asset `market_data_validated`, emitted by
`validate_market_data`), or by hand with `start`/`end` in the trigger's config. For every
symbol it computes the partition's features with the same code as `hft features backfill`
(`hft.features.backfill.backfill`: upserts into `features.bar_features` and materializes to the
online store), then validates them with the **features** and **feature_drift** checkpoints
(RSI in [0, 100], no NaN after warm-up, PSI per feature against the training reference).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import Asset, Param, dag, get_current_context, task

from hft.config import get_settings

MARKET_DATA_VALIDATED = Asset("market_data_validated")
FEATURES_BACKFILLED = Asset("bar_features_backfilled")


@dag(
    dag_id="backfill_features",
    schedule=[MARKET_DATA_VALIDATED],
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    is_paused_upon_creation=False,
    tags=["hft", "features"],
    default_args={
        "owner": "hft",
        "retries": 2,
        "retry_delay": timedelta(minutes=2),
        "retry_exponential_backoff": True,
    },
    params={
        "start": Param(None, type=["null", "string"], description="Partition start, ISO UTC"),
        "end": Param(None, type=["null", "string"], description="Partition end (exclusive), ISO UTC"),
    },
    doc_md=__doc__,
)
def backfill_features() -> None:
    """Backfill and validate the features of one validated partition."""

    @task
    def partition() -> dict[str, str]:
        context = get_current_context()
        params = context["params"]
        if params.get("start") and params.get("end"):
            return {"start": params["start"], "end": params["end"]}
        events = context["triggering_asset_events"].get(MARKET_DATA_VALIDATED) or []
        if events:
            return {"start": events[-1].extra["start"], "end": events[-1].extra["end"]}
        # a manual run without config: the last complete hour before the run
        end = context["dag_run"].run_after.replace(minute=0, second=0, microsecond=0)
        return {"start": (end - timedelta(hours=1)).isoformat(), "end": end.isoformat()}

    @task(outlets=[FEATURES_BACKFILLED])
    def backfill(part: dict[str, str]) -> int:
        from hft.features.backfill import backfill as run_backfill

        settings = get_settings()
        start, end = datetime.fromisoformat(part["start"]), datetime.fromisoformat(part["end"])
        rows = 0
        for symbol in settings.symbols:
            rows += run_backfill(settings, symbol, settings.bar_interval, start, end, materialize=True)
        print(f"{rows} feature rows upserted for {part['start']} → {part['end']}")
        return rows

    @task
    def validate_features(part: dict[str, str], rows: int) -> str:
        from airflow.sdk.exceptions import AirflowFailException

        from hft.quality.validate import validate_features as run

        summary = run(
            get_settings(), datetime.fromisoformat(part["start"]), datetime.fromisoformat(part["end"])
        )
        print(summary.text())
        if not summary.success:
            raise AirflowFailException(summary.text())
        return summary.text()

    part = partition()
    validate_features(part, backfill(part))


backfill_features()
