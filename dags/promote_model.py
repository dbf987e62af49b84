"""
### promote_model

After each retraining (asset `model_challenger`), or by hand: the promotion gate of
`hft promote` (`hft.ml.promote.promote`). The challenger becomes `champion` only when its
out-of-sample metrics beat the champion's; otherwise the champion stays and the reason is in
the task log and the returned decision. The API polls the `champion` alias and loads a new
champion by itself.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import Asset, dag, task

from hft.config import get_settings

MODEL_CHALLENGER = Asset("model_challenger")


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
    doc_md=__doc__,
)
def promote_model() -> None:
    """Promote the challenger when it beats the champion."""

    @task
    def promote() -> dict[str, object]:
        from hft.ml.promote import promote as gate

        decision = gate(get_settings())
        outcome = {"promoted": bool(decision.promoted), "reason": str(decision.reason)}
        print(("PROMOTED: " if decision.promoted else "KEPT CHAMPION: ") + outcome["reason"])
        return outcome

    promote()


promote_model()
