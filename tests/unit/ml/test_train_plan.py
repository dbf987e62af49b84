"""Issue 23 item 0: the budget is planned as work up front, recorded, and the same seed gives the same model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from hft.config import ConfigurationError, Settings
from hft.ml.evaluate import resolve_symbols
from hft.ml.evaluation import WalkForwardConfig
from hft.ml.models import FitConfig
from hft.ml.train import TrainPlan, _plan_params, train
from hft.ml.tuning import sampler_seed


def _tiny_plan(seed: int = 7) -> TrainPlan:
    return TrainPlan(
        tune_seconds=1.0,
        fit=FitConfig(seed=seed, threads=1, rf_max_rows=2500, lstm_max_rows=2500),
        wf=WalkForwardConfig(n_folds=2, test_fraction=0.25, embargo_bars=4, max_train_rows=3000, n_boot=10),
        tune_max_rows=2000,
        units={"xgboost": 30, "lightgbm": 30, "random_forest": 8, "lstm": 1},
        tune_units={"xgboost": 20, "lightgbm": 20, "random_forest": 5, "lstm": 1},
        tune_trials={"xgboost": 3, "lightgbm": 3, "random_forest": 2, "lstm": 2},
        tune_folds=1,
        budget_minutes=0.1,
    )


def test_the_plan_is_a_function_of_the_budget_alone_and_grows_with_it() -> None:
    a, b = TrainPlan.for_budget(10), TrainPlan.for_budget(10)
    assert a.as_dict() == b.as_dict()
    assert a.key() == b.key()
    small, big = TrainPlan.for_budget(1).as_dict(), a.as_dict()
    assert big["tune"]["trials"]["xgboost"] >= 10
    assert big["tune"]["trials"]["lightgbm"] >= 20
    for m in ("xgboost", "lightgbm", "random_forest", "lstm"):
        assert big["tune"]["trials"][m] >= small["tune"]["trials"][m]
        assert big["fit"]["units"][m] >= small["fit"]["units"][m] >= 1
    # the planned CPU work stays inside the budget, leaving room for the dataset, baselines and MLflow
    assert big["estimate_cpu_s"]["total_s"] <= 0.85 * 600
    assert TrainPlan.for_budget(10, seed=1).key() != a.key()


def test_plan_sets_the_size_of_every_fit() -> None:
    plan = TrainPlan.for_budget(3)
    params = plan.apply({m: {"x": 1} for m in ("xgboost", "lightgbm", "random_forest", "lstm")})
    assert params["xgboost"]["num_boost_round"] == plan.units["xgboost"]
    assert params["random_forest"]["n_estimators"] == plan.units["random_forest"]
    assert params["lstm"]["max_epochs"] == plan.units["lstm"]
    flat = _plan_params(plan.as_dict())
    assert flat["plan.tune_trials.xgboost"] == plan.trials()["xgboost"]
    assert flat["plan.units.random_forest"] == plan.units["random_forest"]


def test_sampler_seed_differs_per_symbols_and_model_and_is_stable() -> None:
    seeds = {sampler_seed(42, k, m) for k in ("BTCUSDT", "ETHUSDT") for m in ("xgboost", "lightgbm")}
    assert len(seeds) == 4
    assert sampler_seed(42, "BTCUSDT", "xgboost") == sampler_seed(42, "BTCUSDT", "xgboost")


@pytest.fixture(scope="module")
def bars(data_dir: Path) -> dict[str, pd.DataFrame]:
    from hft.market.ohlcv import read_ohlcv_csv

    b = read_ohlcv_csv(data_dir / "klines_15m" / "BTCUSDT_15m_ohlcv_2023-01-01_2025-08-31.csv.gz")
    return {"BTCUSDT": b.loc["2025-05-01":"2025-06-30"]}


def _run(bars: dict[str, pd.DataFrame], seed: int = 7) -> Any:
    return train(
        Settings(),
        ["BTCUSDT"],
        "15m",
        "memory",
        "2025-05-01",
        "2025-06-30",
        0.1,
        None,
        "unit-plan",
        bars=bars,
        plan=_tiny_plan(seed),
    )


def test_two_trainings_with_the_same_seed_and_plan_give_identical_models(
    bars: dict[str, pd.DataFrame],
) -> None:
    a = _run(bars)
    b = _run(bars)
    ds = a.dataset
    rows = ds.labeled()
    rows = rows[ds.window_ok(a.ensemble.seq_len)[rows]][-500:]
    np.testing.assert_array_equal(a.ensemble.predict_rows(ds.X, rows), b.ensemble.predict_rows(ds.X, rows))
    assert a.params == b.params
    assert {m: s["best_params"] for m, s in a.tuning.items()} == {
        m: s["best_params"] for m, s in b.tuning.items()
    }
    np.testing.assert_array_equal(a.report.oof["ensemble"], b.report.oof["ensemble"])
    # the plan is recorded and is what ran: trials per model, and every fit's size
    assert a.plan == _tiny_plan().as_dict()
    for m, n in a.plan["tune"]["trials"].items():
        assert a.tuning[m]["trials"] == n
    assert a.params["xgboost"]["num_boost_round"] == 30
    assert a.params["random_forest"]["n_estimators"] == 8
    assert a.ensemble.symbols == ("BTCUSDT",)
    # item 3: each fold records whether the ensemble beat its best member; the final model serves
    # what the walk-forward selected, and so does the gate's fold model
    assert all(isinstance(f["ensemble_beats_best_member"], bool) for f in a.report.folds)
    assert a.ensemble.served == a.report.selection["served"] == b.ensemble.served
    assert a.report.last_fold_model.served == a.ensemble.served


def test_evaluate_names_a_symbolless_file_by_the_models_symbol(tmp_path: Path) -> None:
    from types import SimpleNamespace

    f = tmp_path / "later_bars.csv"
    f.write_text("x\n")
    s = Settings()
    one: Any = SimpleNamespace(symbols=("ETHUSDT",))
    assert resolve_symbols(s, f, None, one, {}) == ["ETHUSDT"]
    assert resolve_symbols(s, f, ["BTCUSDT"], one, {}) == ["BTCUSDT"]
    pooled: Any = SimpleNamespace(symbols=("BTCUSDT", "ETHUSDT"))
    with pytest.raises(ConfigurationError, match="--symbol"):
        resolve_symbols(s, f, None, pooled, {})
    named = tmp_path / "ETHUSDT_15m_ohlcv_2025.csv"
    named.write_text("x\n")
    assert resolve_symbols(s, named, None, pooled, {}) == ["ETHUSDT"]
