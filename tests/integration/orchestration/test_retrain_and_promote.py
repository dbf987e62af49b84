"""retrain_models and promote_model through ``airflow dags test`` with the real MLflow registry.

retrain_models trains a real ensemble on the shared 15m klines with a small budget and
registers it as ``challenger``. The test makes it the champion, then registers two more
versions of the same model whose logged gate metrics it sets (worse: ROC-AUC 0.40; better:
0.99 and a large net PnL) so the gate's outcome is known in advance; promote_model must keep
the champion for the worse challenger and move ``champion`` to the better one. The champion is
scored for real by the gate on the challenger's window.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from hft.config import Settings
from tests.integration.orchestration.conftest import DagTest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _register_variant(settings: Settings, name: str, base_version: str, **metrics: float) -> str:
    """Register the base version's model again under a new run whose gate metrics are overridden."""
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=settings.mlflow_uri)
    base = client.get_model_version(name, base_version)
    logged = client.get_run(base.run_id).data.metrics
    mlflow.set_tracking_uri(settings.mlflow_uri)
    with mlflow.start_run(run_name=f"variant-of-v{base_version}") as run:
        mlflow.log_metrics({**logged, **metrics})
    # MLflow 3: a version's source is a logged model, named again by its id
    version = client.create_model_version(
        name,
        source=base.source,
        run_id=run.info.run_id,
        tags=base.tags,
        model_id=getattr(base, "model_id", None) or base.source.rsplit("/", 1)[-1],
    )
    client.set_registered_model_alias(name, "challenger", str(version.version))
    return str(version.version)


def test_retrain_registers_challenger_and_promote_gate_refuses_worse_accepts_better(
    dag_test: DagTest, market_data: Settings, data_dir: Path
) -> None:
    from mlflow import MlflowClient

    name = f"orchestration-test-{uuid.uuid4().hex[:8]}"
    env = {"HFT_MODEL_NAME": name}
    client = MlflowClient(tracking_uri=market_data.mlflow_uri)

    proc = dag_test(
        "retrain_models",
        {
            "budget_minutes": 0.5,
            "start": "2025-07-01",
            "end": "2025-08-31",
            "symbols": ["BTCUSDT"],
            "data": str(data_dir / "klines_15m"),
        },
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    first = client.get_model_version_by_alias(name, "challenger")
    assert f"registered challenger models:/{name}/{first.version}" in proc.stdout + proc.stderr
    client.set_registered_model_alias(name, "champion", str(first.version))

    worse = _register_variant(market_data, name, str(first.version), **{"gate.roc_auc": 0.40})
    proc = dag_test("promote_model", env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    assert "KEPT CHAMPION" in out, out[-5000:]
    assert client.get_model_version_by_alias(name, "champion").version == first.version
    assert client.get_model_version_by_alias(name, "challenger").version == worse

    better = _register_variant(
        market_data, name, str(first.version), **{"gate.roc_auc": 0.99, "gate.net_pnl_after_fees": 1e9}
    )
    proc = dag_test("promote_model", env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    assert "PROMOTED" in out, out[-5000:]
    assert client.get_model_version_by_alias(name, "champion").version == better
