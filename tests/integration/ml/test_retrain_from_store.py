"""``retrain_models`` without ``data`` trains from the store, through ``airflow dags test``.

Reuses the orchestration fixtures (``tests/integration/orchestration/conftest.py``): the test
stack with real 15m klines of BTCUSDT and ETHUSDT (2024-07-20 → 08-09) and captured trades in
PostgreSQL, features backfilled from 2024-07-26, Airflow's metadata migrated. The DAG's plan says
``data: store``; the registered challenger's run and version say ``data = store``; with it as
champion and a better-scored challenger, ``promote_model`` re-scores the champion on the bars of
``market.bars`` (``load_bars("store")``) and promotes.
"""

from __future__ import annotations

import uuid

import pytest

from hft.config import Settings
from tests.integration.orchestration.conftest import DagTest, dag_test, market_data  # noqa: F401
from tests.integration.orchestration.test_retrain_and_promote import _register_variant

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_retrain_models_without_data_trains_from_the_store_and_promote_reads_it(
    dag_test: DagTest,  # noqa: F811
    market_data: Settings,  # noqa: F811
) -> None:
    from mlflow import MlflowClient

    name = f"store-retrain-{uuid.uuid4().hex[:8]}"
    env = {"HFT_MODEL_NAME": name}
    client = MlflowClient(tracking_uri=market_data.mlflow_uri)
    conf = {"budget_minutes": 0.1, "start": "2024-07-26", "end": "2024-08-08"}
    proc = dag_test("retrain_models", conf, timeout=600, env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    assert "'data': 'store'" in out, out[-5000:]
    first = client.get_model_version_by_alias(name, "challenger")
    assert f"registered challenger models:/{name}/{first.version}" in out
    assert first.tags["data"] == "store"
    params = client.get_run(first.run_id).data.params
    assert params["data"] == "store"
    assert params["symbols"] == '["BTCUSDT", "ETHUSDT"]'

    client.set_registered_model_alias(name, "champion", str(first.version))
    better = _register_variant(
        market_data, name, str(first.version), **{"gate.roc_auc": 0.99, "gate.net_pnl_after_fees": 1e9}
    )
    proc = dag_test("promote_model", env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    assert "PROMOTED" in out, out[-5000:]
    assert client.get_model_version_by_alias(name, "champion").version == better
