"""``hft evaluate`` on a file whose name carries no symbol: the JSON keys the issue's evaluation reads,
the symbol from the model, and the backtest by the bot's rule."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from hft.market.ohlcv import read_ohlcv_csv
from hft.ml import evaluate as E
from hft.ml.dataset import build_dataset, default_feature_set
from hft.ml.models import DEFAULT_PARAMS, FitConfig, fit_ensemble

STEP = 15 * 60 * 10**9


def test_evaluate_a_symbolless_csv(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bars = read_ohlcv_csv(data_dir / "klines_15m" / "ETHUSDT_15m_ohlcv_2023-01-01_2025-08-31.csv.gz")
    bars = bars.loc["2025-06-01":"2025-08-31"]
    ds = build_dataset({"ETHUSDT": bars.loc[:"2025-07-31"]}, default_feature_set(), "15m")
    p = {k: dict(v) for k, v in DEFAULT_PARAMS.items()}
    p["xgboost"]["num_boost_round"] = 30
    p["lightgbm"]["num_boost_round"] = 30
    p["random_forest"]["n_estimators"] = 5
    p["lstm"].update(seq_len=8, hidden=8, max_epochs=1)
    rows = ds.labeled()
    rows = rows[ds.window_ok(8)[rows]]
    ens, _ = fit_ensemble(
        ds.X, ds.y, ds.times, rows, ds.feature_names, ds.feature_version, p, FitConfig(), STEP, 4 * STEP
    )
    ens.symbols = ("ETHUSDT",)
    csv = tmp_path / "later_bars.csv"  # no symbol in the name, as the project's hidden evaluation may use
    out = bars.reset_index()
    out.columns = ["open_time", *out.columns[1:]]
    out.to_csv(csv, index=False)

    def fake_load(settings: Any, uri: str) -> tuple[Any, dict[str, str]]:
        return ens, {"uri": uri}

    monkeypatch.setattr(E, "load_ensemble", fake_load)
    from hft.cli import app

    res = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--model",
            "runs:/x/gate_model",
            "--data",
            str(csv),
            "--start",
            "2025-08-01",
            "--out",
            str(tmp_path / "m.json"),
        ],
    )
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["symbols"] == ["ETHUSDT"]
    for k in ("n", "accuracy", "accuracy_ci95", "base_rate", "roc_auc"):
        assert k in m
    assert {"net_pnl_after_fees", "trades", "threshold_trades", "edge_filter"} <= set(m["backtest"])
    assert m["backtest"]["edge_filter"] == 1.0
    assert m["backtest"]["trades"] <= m["backtest"]["threshold_trades"]
    assert m["first_decision"] >= "2025-08-01"
    assert np.isfinite(m["roc_auc"])
    # issue 23 item 1: the model's horizon and label travel with it (ensemble.json) and
    # `hft evaluate` scores that label and holds each position h bars, one at a time
    ens.horizon, ens.label_kind = 4, "barrier"
    ens.label_params = {"barrier_k": 1.0, "barrier_min_bps": 22.0}
    ens.save(tmp_path / "saved")
    loaded = E.Ensemble.load(tmp_path / "saved")
    assert (loaded.horizon, loaded.label_kind, loaded.label_params) == (4, "barrier", ens.label_params)
    res = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--model",
            "runs:/x/gate_model",
            "--data",
            str(csv),
            "--start",
            "2025-08-01",
            "--out",
            str(tmp_path / "m4.json"),
        ],
    )
    assert res.exit_code == 0, res.output
    m4 = json.loads((tmp_path / "m4.json").read_text())
    assert (m4["horizon"], m4["label_kind"]) == (4, "barrier")
    assert m4["backtest"]["threshold_trades"] <= m4["n"] / 4 + 1  # non-overlapping 4-bar positions
    for k in ("n", "accuracy", "accuracy_ci95", "base_rate", "roc_auc"):
        assert k in m4
