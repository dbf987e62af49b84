"""
### backfill_features

Runs after each validated window (asset `market_data_validated`, emitted by
`validate_market_data`), or by hand. For every symbol it computes the window's features with the
same code as `hft features backfill` (`hft.features.backfill.backfill`: upserts into
`features.bar_features` and materializes to the online store), then validates them with the
**features** and **feature_drift** checkpoints (RSI in [0, 100], no NaN after warm-up, PSI per
feature against the training reference).

**Which window**: `start` and `end` in the trigger's config (both or neither, ISO 8601, UTC when
no offset; anything else, or an unknown key, fails the run at once saying what is wrong); else
the window of the triggering asset event; else (a manual or REST run, with or without
`logical_date`) the latest complete hour of the stored market data's own time line, the same
rule as `validate_market_data` (`hft.quality.partition`).

**What it emits.** `backfill` emits `bar_features_backfilled` (the window in `extra`).
`check_drift` reads the PSI the features validation measured (trailing
`HFT_DRIFT_WINDOW_DAYS` against the training window) and, when any feature's PSI is above
`HFT_DRIFT_RETRAIN_THRESHOLD`, emits `features_drifted` (PSI values and window in `extra`):
that event starts `retrain_models` outside its time schedule. No drift above the threshold (or
too few bars to measure it): the task is skipped, nothing is emitted, and the log says why.

Every task is idempotent per window: the backfill upserts, the validation only reads.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import Asset, Metadata, Param, dag, get_current_context, task

from hft.config import get_settings

MARKET_DATA_VALIDATED = Asset("market_data_validated")
FEATURES_BACKFILLED = Asset("bar_features_backfilled")
FEATURES_DRIFTED = Asset("features_drifted")
CONF_KEYS = ("start", "end")


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
        "start": Param(
            None, type=["null", "string"], description="Window start, ISO 8601 (UTC if no offset)"
        ),
        "end": Param(
            None, type=["null", "string"], description="Window end (exclusive), ISO 8601 (UTC if no offset)"
        ),
    },
    doc_md=__doc__,
)
def backfill_features() -> None:
    """Backfill and validate the features of one validated partition."""

    @task
    def partition() -> dict[str, str]:
        from airflow.sdk.exceptions import AirflowFailException

        from hft.quality.partition import (
            PartitionError,
            Window,
            check_conf_keys,
            conf_window,
            run_facts,
            window_for_run,
        )

        context = get_current_context()
        try:
            conf, _, _ = run_facts(context)
            check_conf_keys(conf, CONF_KEYS)
            if conf_window(conf) is None:
                events = (context.get("triggering_asset_events") or {}).get(MARKET_DATA_VALIDATED) or []
                if events:
                    window = Window.from_dict({**events[-1].extra, "reason": "the triggering asset event"})
                    print(f"window {window.start.isoformat()} → {window.end.isoformat()}: {window.reason}")
                    return window.to_dict()
            window = window_for_run(get_settings(), context, CONF_KEYS)
        except PartitionError as exc:
            raise AirflowFailException(f"bad trigger config: {exc}") from None
        print(f"window {window.start.isoformat()} → {window.end.isoformat()}: {window.reason}")
        return window.to_dict()

    @task(outlets=[FEATURES_BACKFILLED])
    def backfill(part: dict[str, str]):  # type: ignore[no-untyped-def]
        from hft.features.backfill import backfill as run_backfill

        settings = get_settings()
        start, end = datetime.fromisoformat(part["start"]), datetime.fromisoformat(part["end"])
        rows = 0
        for symbol in settings.symbols:
            rows += run_backfill(settings, symbol, settings.bar_interval, start, end, materialize=True)
        print(f"{rows} feature rows upserted for {part['start']} → {part['end']}")
        yield Metadata(FEATURES_BACKFILLED, extra={"start": part["start"], "end": part["end"], "rows": rows})
        return rows

    @task
    def validate_features(part: dict[str, str], rows: int) -> dict[str, object]:
        from airflow.sdk.exceptions import AirflowFailException

        from hft.quality.validate import validate_features as run

        summary = run(
            get_settings(), datetime.fromisoformat(part["start"]), datetime.fromisoformat(part["end"])
        )
        print(summary.text())
        if not summary.success:
            raise AirflowFailException(summary.text())
        return {"summary": summary.text(), "drift": summary.drift, "skipped": summary.skipped}

    @task(outlets=[FEATURES_DRIFTED])
    def check_drift(part: dict[str, str], report: dict[str, object]):  # type: ignore[no-untyped-def]
        from airflow.sdk.exceptions import AirflowSkipException

        from hft.quality.drift import retrain_decision

        threshold = get_settings().drift_retrain_threshold
        psi = {str(k): float(v) for k, v in dict(report.get("drift") or {}).items()}  # type: ignore[call-overload]
        retrain, why = retrain_decision(psi, threshold)
        print(why)
        if not retrain:
            # no event: retrain_models keeps its time schedule
            raise AirflowSkipException(why)
        yield Metadata(
            FEATURES_DRIFTED,
            extra={
                "start": part["start"],
                "end": part["end"],
                "psi": psi,
                "threshold": threshold,
                "why": why,
            },
        )

    part = partition()
    check_drift(part, validate_features(part, backfill(part)))


backfill_features()
