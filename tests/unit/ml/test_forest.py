"""Compiled forests reproduce the native libraries' predictions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xgboost as xgb
from sklearn.ensemble import RandomForestClassifier

from hft.ml.forest import CompiledForest, compile_sklearn_forest, compile_xgboost

from .conftest import synthetic_xy


def test_compiled_random_forest_equals_scikit_learn(tmp_path: Path) -> None:
    X, y, _ = synthetic_xy(3000)
    rf = RandomForestClassifier(n_estimators=20, max_depth=6, min_samples_leaf=20, random_state=0).fit(X, y)
    c = compile_sklearn_forest(rf)
    np.testing.assert_allclose(c.raw(X), rf.predict_proba(X)[:, 1], atol=1e-12)
    one_by_one = np.array([c.raw(X[i : i + 1])[0] for i in range(200)])  # the single-row serving path
    np.testing.assert_allclose(one_by_one, rf.predict_proba(X[:200])[:, 1], atol=1e-12)
    c.save(tmp_path / "rf.npz")
    np.testing.assert_array_equal(CompiledForest.load(tmp_path / "rf.npz").raw(X[:10]), c.raw(X[:10]))


def test_compiled_xgboost_equals_native_margin_with_missing_values() -> None:
    X, y, _ = synthetic_xy(3000)
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 4, "eta": 0.1, "nthread": 1},
        xgb.DMatrix(X, label=y),
        60,
    )
    c = compile_xgboost(booster, X)
    Xn = X.copy()
    Xn[::5, 0] = np.nan
    native = booster.predict(xgb.DMatrix(Xn), output_margin=True)
    np.testing.assert_allclose(c.raw(Xn), native, atol=1e-4)
    one_by_one = np.array([c.raw(Xn[i : i + 1])[0] for i in range(200)])
    np.testing.assert_allclose(one_by_one, native[:200], atol=1e-4)
