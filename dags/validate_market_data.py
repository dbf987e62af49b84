"""
### validate_market_data

Hourly: runs the Great Expectations checkpoints **ticks** and **bars** (`expectations/`) on one
partition of `market.ticks` / `market.bars`, the run's data interval (or `start`/`end` given in
the trigger's config).

* ticks: schema, non-null, price > 0, quantity > 0, trade ids unique and contiguous per symbol,
  trade times monotonic, none in the future;
* bars: every expected bar present (known exchange halts excepted), OHLC consistent, volume ≥ 0.

A failed check fails its task at once (no retry: the data will not change by waiting) with a
summary naming each failing check and rows; the result stays in
`<home>/quality/validation_runs.jsonl` and the data docs (`<home>/data_docs/index.html`).
When both pass, the asset `market_data_validated` gets an event carrying the partition, which
starts `backfill_features`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import Asset, CronDataIntervalTimetable, Metadata, Param, dag, get_current_context, task

from hft.config import get_settings

MARKET_DATA_VALIDATED = Asset("market_data_validated")


def _partition() -> dict[str, str]:
    context = get_current_context()
    params = context["params"]
    if params.get("start") and params.get("end"):
        return {"start": params["start"], "end": params["end"]}
    return {
        "start": context["data_interval_start"].isoformat(),
        "end": context["data_interval_end"].isoformat(),
    }


def _check(kind: str, partition: dict[str, str]) -> str:
    from airflow.sdk.exceptions import AirflowFailException

    from hft.quality.validate import validate

    summary = validate(
        get_settings(),
        kind,
        datetime.fromisoformat(partition["start"]),
        datetime.fromisoformat(partition["end"]),
    )
    print(summary.text())
    if not summary.success:
        raise AirflowFailException(summary.text())
    return summary.text()


@dag(
    dag_id="validate_market_data",
    schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    is_paused_upon_creation=False,
    tags=["hft", "quality", "market-data"],
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
def validate_market_data() -> None:
    """Validate one hourly partition of ticks and bars."""

    @task
    def partition() -> dict[str, str]:
        return _partition()

    @task
    def validate_ticks(part: dict[str, str]) -> str:
        return _check("ticks", part)

    @task
    def validate_bars(part: dict[str, str]) -> str:
        return _check("bars", part)

    @task(outlets=[MARKET_DATA_VALIDATED])
    def publish(part: dict[str, str], ticks: str, bars: str):  # type: ignore[no-untyped-def]
        yield Metadata(MARKET_DATA_VALIDATED, extra=part)

    part = partition()
    publish(part, validate_ticks(part), validate_bars(part))


validate_market_data()
