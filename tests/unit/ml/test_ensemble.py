"""The ensemble: learns a real signal, scores one window like a batch, round-trips, reproduces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hft.ml.metrics import roc_auc
from hft.ml.models import DEFAULT_PARAMS, Ensemble, FitConfig, fit_ensemble, predict_frame

from .conftest import synthetic_xy

STEP = 15 * 60 * 10**9
NAMES = tuple(f"f{i}" for i in range(6))


def _params() -> dict[str, dict]:
    p = {k: dict(v) for k, v in DEFAULT_PARAMS.items()}
    p["xgboost"]["num_boost_round"] = 60
    p["lightgbm"]["num_boost_round"] = 60
    p["lightgbm"]["min_data_in_leaf"] = 50
    p["random_forest"]["n_estimators"] = 20
    p["random_forest"]["min_samples_leaf"] = 50
    p["lstm"].update(seq_len=8, hidden=8, max_epochs=2)
    return p


@pytest.fixture(scope="module")
def fitted() -> tuple[Ensemble, np.ndarray, np.ndarray]:
    X, y, times = synthetic_xy(5000)
    train = np.arange(7, 4000)
    ens, _ = fit_ensemble(
        X,
        y,
        times,
        train,
        NAMES,
        "test_v1",
        _params(),
        FitConfig(threads=1, lstm_seconds=120),
        STEP,
        2 * STEP,
    )
    return ens, X, y


def test_ensemble_learns_a_real_signal_out_of_sample(fitted: tuple[Ensemble, np.ndarray, np.ndarray]) -> None:
    ens, X, y = fitted
    test = np.arange(4010, 5000)
    p = ens.predict_rows(X, test)
    assert roc_auc(y[test], p) > 0.65  # the generating model itself reaches about 0.72
    assert ((p > 0) & (p < 1)).all()


def test_one_window_scores_like_the_batch_and_the_frame(
    fitted: tuple[Ensemble, np.ndarray, np.ndarray],
) -> None:
    ens, X, _ = fitted
    rows = np.arange(4500, 4520)
    batch = ens.predict_rows(X, rows)
    single = np.array([ens.predict_window(X[r - ens.seq_len + 1 : r + 1]) for r in rows])
    np.testing.assert_allclose(single, batch, atol=1e-6)
    frame = predict_frame(ens, pd.DataFrame(X[4400:4520], columns=list(NAMES)))
    assert np.isnan(frame[: ens.seq_len - 1]).all()
    np.testing.assert_allclose(frame[-20:], batch, atol=1e-6)
    with pytest.raises(ValueError, match="window shape"):
        ens.predict_window(X[:3])


def test_saved_ensemble_loads_with_identical_predictions(
    fitted: tuple[Ensemble, np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    ens, X, _ = fitted
    ens.save(tmp_path / "e")
    again = Ensemble.load(tmp_path / "e")
    rows = np.arange(4100, 4300)
    np.testing.assert_array_equal(again.predict_rows(X, rows), ens.predict_rows(X, rows))
    assert again.feature_names == NAMES
    assert again.feature_version == "test_v1"


def test_fitting_twice_with_the_same_seed_gives_the_same_model(
    fitted: tuple[Ensemble, np.ndarray, np.ndarray],
) -> None:
    ens, X, y = fitted
    times = (np.arange(len(y), dtype=np.int64) + 1) * STEP
    again, _ = fit_ensemble(
        X,
        y,
        times,
        np.arange(7, 4000),
        NAMES,
        "test_v1",
        _params(),
        FitConfig(threads=1, lstm_seconds=120),
        STEP,
        2 * STEP,
    )
    rows = np.arange(4100, 4300)
    np.testing.assert_allclose(again.predict_rows(X, rows), ens.predict_rows(X, rows), atol=1e-9)
