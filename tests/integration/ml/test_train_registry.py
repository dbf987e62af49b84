"""Train → MLflow registry → serving load → evaluate → promote, on the real test stack.

`hft train` runs as the CLI does (a subprocess) on a two-month BTCUSDT slice (July-August 2025) with a tiny budget;
everything talks to the stack's real PostgreSQL (Optuna storage) and MLflow server.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hft.config import REPO_ROOT, Settings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def trained(stack: object, stack_settings: Settings, data_dir: Path) -> tuple[str, str, Path]:
    """A model registered by `hft train` under a fresh name; returns (name, version, data file)."""
    name = f"test-ens-{uuid.uuid4().hex[:8]}"
    data = data_dir / "klines_15m" / "BTCUSDT_15m_ohlcv_2023-01-01_2025-08-31.csv.gz"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "hft.cli",
            "train",
            "--symbol",
            "BTCUSDT",
            "--interval",
            "15m",
            "--data",
            str(data),
            "--start",
            "2025-07-01",
            "--end",
            "2025-08-31",
            "--budget-minutes",
            "0.1",
            "--model-name",
            name,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO_ROOT,
        env=os.environ.copy(),
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    last = out.stdout.strip().splitlines()[-1]
    m = re.fullmatch(rf"models:/{name}/(\d+)", last)
    assert m, f"last stdout line is not the model URI: {last!r}"
    return name, m.group(1), data


def test_train_logs_report_and_registers_challenger(
    trained: tuple[str, str, Path], stack_settings: Settings
) -> None:
    from mlflow import MlflowClient

    name, version, _ = trained
    client = MlflowClient(tracking_uri=stack_settings.mlflow_uri)
    mv = client.get_model_version_by_alias(name, "challenger")
    assert str(mv.version) == version
    assert mv.tags["feature_version"] == "bar_features_ohlcv_v1"
    run = client.get_run(mv.run_id)
    assert len(run.data.params["git_commit"]) == 40
    assert run.data.params["start"] == "2025-07-01"
    assert run.data.params["end"] == "2025-08-31"
    for model in (
        "ensemble",
        "xgboost",
        "lightgbm",
        "random_forest",
        "lstm",
        "majority",
        "persistence",
        "logistic",
        "lightgbm_plain",
    ):
        assert 0.3 < run.data.metrics[f"wf.{model}.roc_auc"] < 0.7
    m = run.data.metrics
    assert m["wf.ensemble.accuracy_ci95_lo"] <= m["wf.ensemble.accuracy"] <= m["wf.ensemble.accuracy_ci95_hi"]
    assert "wf.ensemble.bt.net_pnl_after_fees" in m
    arts = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert {"plots/calibration.png", "plots/equity.png", "plots/feature_importance.png"} <= arts
    report = json.loads(
        Path(client.download_artifacts(run.info.run_id, "walk_forward_report.json")).read_text()
    )
    folds = report["folds"]
    assert len(folds) >= 2
    for a, b in itertools.pairwise(folds):
        assert a["test_end"] <= b["test_start"]
    for f in folds:
        assert f["train_end"] < f["test_start"]
    studies = json.loads(Path(client.download_artifacts(run.info.run_id, "tuning.json")).read_text())
    assert set(studies) == {"xgboost", "lightgbm", "random_forest", "lstm"}
    assert all(s["complete"] >= 1 for s in studies.values())


def test_serving_model_matches_the_pyfunc_model(
    trained: tuple[str, str, Path], stack_settings: Settings
) -> None:
    import mlflow

    from hft.market.ohlcv import read_ohlcv_csv
    from hft.ml.dataset import build_dataset, default_feature_set
    from hft.ml.registry import load_serving_model

    name, version, data = trained
    sm = load_serving_model(stack_settings, alias="challenger", name=name)
    assert sm.version == version
    assert sm.feature_version == "bar_features_ohlcv_v1"
    bars = read_ohlcv_csv(data).loc["2025-08-01":"2025-08-31"]
    ds = build_dataset({"BTCUSDT": bars}, default_feature_set(sm.feature_version), "15m")
    frame = pd.DataFrame(ds.X[-40:].astype(np.float64), columns=list(sm.feature_names))
    mlflow.set_tracking_uri(stack_settings.mlflow_uri)
    pyfunc = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    via_mlflow = np.asarray(pyfunc.predict(frame))
    native = sm.predict_proba_frame(frame)
    np.testing.assert_allclose(native, via_mlflow, atol=1e-9, equal_nan=True)
    one = sm.predict_proba_window(ds.X[-sm.sequence_length :])
    assert abs(one - native[-1]) < 1e-6
    assert 0 < one < 1


def test_evaluate_writes_every_field(trained: tuple[str, str, Path], tmp_path: Path) -> None:
    name, _version, data = trained
    out = tmp_path / "metrics.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "hft.cli",
            "evaluate",
            "--model",
            f"models:/{name}@challenger",
            "--data",
            str(data),
            "--start",
            "2025-08-20",
            "--end",
            "2025-08-31",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO_ROOT,
        env=os.environ.copy(),
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rep = json.loads(out.read_text())
    for key in (
        "n",
        "accuracy",
        "accuracy_ci95",
        "balanced_accuracy",
        "roc_auc",
        "log_loss",
        "brier",
        "base_rate",
    ):
        assert key in rep
    assert set(rep["backtest"]) >= {"trades", "net_pnl_after_fees", "sharpe", "max_drawdown"}
    assert 11 * 96 - 40 < rep["n"] <= 12 * 96  # decisions from 2025-08-20 through 2025-08-31 only
    assert rep["first_decision"] >= "2025-08-20"
    lo, hi = rep["accuracy_ci95"]
    assert lo <= rep["accuracy"] <= hi


def test_promote_decides_and_logs_either_way(
    trained: tuple[str, str, Path], stack_settings: Settings
) -> None:
    from mlflow import MlflowClient

    from hft.ml.promote import promote

    name, version, _ = trained
    d = promote(stack_settings, name)
    client = MlflowClient(tracking_uri=stack_settings.mlflow_uri)
    assert client.get_model_version(name, version).tags["promotion_decision"] == (
        "promoted" if d.promoted else "rejected"
    )
    if d.promoted:
        assert str(client.get_model_version_by_alias(name, "champion").version) == version
        again = promote(stack_settings, name)
        assert not again.promoted
        assert "already champion" in again.reason
    else:
        with pytest.raises(Exception, match="champion"):
            client.get_model_version_by_alias(name, "champion")


def test_evaluate_reproduces_the_gate_metrics_of_the_logged_fold_model(
    trained: tuple[str, str, Path], stack_settings: Settings
) -> None:
    from mlflow import MlflowClient

    from hft.ml.evaluate import evaluate

    name, version, data = trained
    client = MlflowClient(tracking_uri=stack_settings.mlflow_uri)
    run_id = client.get_model_version(name, version).run_id
    m = client.get_run(run_id).data.metrics
    start = pd.Timestamp(int(m["gate.window_start_ns"]) - 1, tz="UTC").isoformat()
    end = pd.Timestamp(int(m["gate.window_end_ns"]) - 1, tz="UTC").isoformat()
    rep = evaluate(stack_settings, f"runs:/{run_id}/gate_model", data, start, end)
    assert abs(rep["roc_auc"] - m["gate.roc_auc"]) < 1e-9
    assert abs(rep["accuracy"] - m["gate.accuracy"]) < 1e-9
    assert abs(rep["backtest"]["net_pnl_after_fees"] - m["gate.net_pnl_after_fees"]) < 1e-6
