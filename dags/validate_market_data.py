"""
### validate_market_data

Hourly: runs the Great Expectations checkpoints **ticks** and **bars** (`expectations/`) on one
window of `market.ticks` / `market.bars`.

**Which window** (`hft.quality.partition`; the `partition` task logs the window and why):

1. `start` and `end` in the trigger's config ("Trigger DAG w/ config", or `conf` of
   `POST /api/v2/dags/validate_market_data/dagRuns`) win: both or neither, ISO 8601 (UTC when
   no offset), `end` exclusive. Anything else (one of them, an unparsable time, `end` not after
   `start`, an unknown key) fails the run at once with a message saying what is wrong.
2. A run with a data interval (the hourly schedule, a manual run given a logical date) takes its
   interval when the stored data has a row in it, or when the stored data goes on past it (an
   empty hour inside the data is a hole, and the checks report it).
3. Otherwise (a manual or REST run with `logical_date: null`; an hour the data has not reached,
   as on the replay exchange, whose trades are from 2024, or on a freshly started system) the
   **latest complete hour of the stored data's own time line**: the hour ending at the latest
   stored trade time (the latest bar close when no ticks are stored), floored to the hour.
4. No market data stored at all: the run's interval, with nothing to validate.

**What fails.** Bars are expected from each symbol's first stored bar to the latest bar stored
for any symbol; a symbol's ticks are expected in the window when its stored ticks begin before
and go on after it. A window with no rows where none are expected is *skipped* ("nothing to
validate", the task succeeds, the reason is in the log and in `validation_runs.jsonl`); a hole
inside the data, and every other failing check, fails its task at once (no retry: waiting
does not change the data):

* ticks: schema, non-null, price > 0, quantity > 0, trade ids unique and contiguous per symbol,
  trade times monotonic, none in the future, no hole inside a symbol's stored stream;
* bars: every expected bar present (known exchange halts excepted), OHLC consistent, volume ≥ 0.

Each summary names the failing checks and rows; it stays in
`<home>/quality/validation_runs.jsonl` and the data docs (`<home>/data_docs/index.html`). When
something was validated and passed, the asset `market_data_validated` gets an event carrying the
window (`extra={"start", "end"}`), which starts `backfill_features`; a run that validated
nothing skips `publish` and emits no event.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import Asset, CronDataIntervalTimetable, Metadata, Param, dag, get_current_context, task

from hft.config import get_settings

MARKET_DATA_VALIDATED = Asset("market_data_validated")
CONF_KEYS = ("start", "end")


def _partition() -> dict[str, str]:
    from airflow.sdk.exceptions import AirflowFailException

    from hft.quality.partition import PartitionError, window_for_run

    try:
        window = window_for_run(get_settings(), get_current_context(), CONF_KEYS)
    except PartitionError as exc:
        # a config will not get better by retrying
        raise AirflowFailException(f"bad trigger config: {exc}") from None
    print(f"window {window.start.isoformat()} → {window.end.isoformat()}: {window.reason}")
    return window.to_dict()


def _check(kind: str, partition: dict[str, str]) -> dict[str, Any]:
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
    return {"kind": kind, "skipped": summary.skipped, "summary": summary.text()}


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
        "start": Param(
            None, type=["null", "string"], description="Window start, ISO 8601 (UTC if no offset)"
        ),
        "end": Param(
            None, type=["null", "string"], description="Window end (exclusive), ISO 8601 (UTC if no offset)"
        ),
    },
    doc_md=__doc__,
)
def validate_market_data() -> None:
    """Validate one window of ticks and bars."""

    @task
    def partition() -> dict[str, str]:
        return _partition()

    @task
    def validate_ticks(part: dict[str, str]) -> dict[str, Any]:
        return _check("ticks", part)

    @task
    def validate_bars(part: dict[str, str]) -> dict[str, Any]:
        return _check("bars", part)

    @task(outlets=[MARKET_DATA_VALIDATED])
    def publish(part: dict[str, str], ticks: dict[str, Any], bars: dict[str, Any]):  # type: ignore[no-untyped-def]
        from airflow.sdk.exceptions import AirflowSkipException

        if ticks["skipped"] and bars["skipped"]:
            # nothing was validated: no event, so backfill_features does not run on an empty window
            raise AirflowSkipException(f"nothing validated: {ticks['skipped']}; {bars['skipped']}")
        yield Metadata(MARKET_DATA_VALIDATED, extra={"start": part["start"], "end": part["end"]})

    part = partition()
    publish(part, validate_ticks(part), validate_bars(part))


validate_market_data()
