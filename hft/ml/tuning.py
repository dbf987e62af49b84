"""Optuna: one study per model, TPE with median pruning, objective = walk-forward validation ROC-AUC.

Studies live in the configured RDB storage (the local PostgreSQL database ``optuna``), so a run
can resume and the Airflow retrain reuses earlier trials. Tuning only sees the development
period (before the walk-forward test windows), so the reported metrics stay out of sample.

Optuna and XGBoost are imported inside functions: they cost seconds at start-up.
"""

from __future__ import annotations

import logging
import time
import zlib
from typing import Any

import numpy as np

from hft.ml import metrics as M
from hft.ml.dataset import Dataset, interval_timedelta
from hft.ml.models import (
    DEFAULT_PARAMS,
    FitConfig,
    _logit,
    _platt,
    calibration_rows,
    fit_lightgbm,
    fit_lstm,
    fit_random_forest,
    fit_xgboost,
    lstm_logits,
    split_validation,
)
from hft.ml.splits import walk_forward

log = logging.getLogger(__name__)

# share of the tuning time per model: the LSTM's trials cost the most
SHARES = {"xgboost": 0.25, "lightgbm": 0.25, "random_forest": 0.2, "lstm": 0.3}
# the size of one tuning fit when no plan says otherwise: boosting rounds (early-stopped), trees, epochs
TUNE_UNITS = {"xgboost": 400, "lightgbm": 400, "random_forest": 60, "lstm": 6}
SIZE_KEYS = {
    "xgboost": "num_boost_round",
    "lightgbm": "num_boost_round",
    "random_forest": "n_estimators",
    "lstm": "max_epochs",
}
# Search bounds (issue 23, the 4-bar collapse: docs/ml.md). Trials fit on <= 30k rows but the
# chosen parameters then fit on up to 120k: leaves of 900-2,000 rows and a min_child_weight of
# 300-500 (a hessian sum: ~4 x as many rows at p ~ 0.5) were picked on the small trial slices and
# left the full-size fits with a few coarse leaves; a learning rate of 0.01 with the plan's ~200
# rounds moves the logits so little that the calibration slice sees noise. Bounded here.
ETA_MIN = 0.02
MIN_CHILD_WEIGHT_MAX = 100.0
MIN_LEAF_ROWS_MAX = 500
NO_SIGNAL_AUC = 0.5  # the score of a trial whose served (calibrated) predictions would be constant
# part of every study's name: trials scored by an earlier objective (raw scores, the wider bounds)
# are not resumed as if they answered this one
OBJECTIVE_VERSION = "o2"


def sampler_seed(seed: int, key: str, model: str) -> int:
    """The TPE seed of one study: stable across runs, different per (symbols, model) and per ``seed``.

    One seed for every study made the sampler propose the same parameters for BTC and ETH and for
    models sharing a search-space shape; crc32 (not ``hash``) keeps it stable across processes.
    """
    return zlib.crc32(f"{seed}|{key}|{model}".encode()) & 0x7FFFFFFF


def suggest(trial: Any, model: str, units: dict[str, int] | None = None) -> dict[str, Any]:
    """Sample one model's hyper-parameters (search spaces kept small and sane for noisy targets).

    The size of the fit (rounds, trees, epochs) is not searched: the plan fixes it (``units``).
    """
    size = {**TUNE_UNITS, **(units or {})}
    if model == "xgboost":
        return {
            "max_depth": trial.suggest_int("max_depth", 2, 6),
            "eta": trial.suggest_float("eta", ETA_MIN, 0.2, log=True),
            "subsample": trial.suggest_float("subsample", 0.5, 1.0),
            "colsample_bytree": trial.suggest_float("colsample_bytree", 0.4, 1.0),
            "min_child_weight": trial.suggest_float("min_child_weight", 5.0, MIN_CHILD_WEIGHT_MAX, log=True),
            "lambda": trial.suggest_float("lambda", 0.1, 50.0, log=True),
            "num_boost_round": int(size["xgboost"]),
        }
    if model == "lightgbm":
        return {
            "num_leaves": trial.suggest_int("num_leaves", 4, 63, log=True),
            "learning_rate": trial.suggest_float("learning_rate", ETA_MIN, 0.2, log=True),
            "min_data_in_leaf": trial.suggest_int("min_data_in_leaf", 50, MIN_LEAF_ROWS_MAX, log=True),
            "feature_fraction": trial.suggest_float("feature_fraction", 0.4, 1.0),
            "bagging_fraction": trial.suggest_float("bagging_fraction", 0.5, 1.0),
            "lambda_l2": trial.suggest_float("lambda_l2", 0.01, 50.0, log=True),
            "num_boost_round": int(size["lightgbm"]),
        }
    if model == "random_forest":
        return {
            "n_estimators": int(size["random_forest"]),
            "max_depth": trial.suggest_int("max_depth", 4, 10),
            "min_samples_leaf": trial.suggest_int("min_samples_leaf", 50, MIN_LEAF_ROWS_MAX, log=True),
            "max_features": trial.suggest_float("max_features", 0.2, 0.8),
        }
    if model == "lstm":
        return {
            "seq_len": trial.suggest_categorical("seq_len", [8, 16, 32]),
            "hidden": trial.suggest_categorical("hidden", [8, 16, 24]),
            "lr": trial.suggest_float("lr", 5e-4, 1e-2, log=True),
            "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-3, log=True),
            "max_epochs": int(size["lstm"]),
            "batch": 512,
        }
    raise ValueError(model)


def score_model(
    model: str,
    params: dict[str, Any],
    ds: Dataset,
    train: np.ndarray,
    test: np.ndarray,
    cfg: FitConfig,
    horizon_ns: int,
    embargo_ns: int,
) -> float:
    """Fit one model on ``train`` as the ensemble fits it and return the ROC-AUC of what it would serve.

    The training rows split like :func:`hft.ml.models.split_validation` in a real fit: fit slice,
    early-stop slice, stack slice; the calibration fits on the last two (:func:`calibration_rows`). The member is served through a Platt calibration with a
    slope >= 0 (:func:`hft.ml.models._platt`): when the calibration slice says its scores point the
    wrong way (or they are constant), the served member answers a constant and scores AUC 0.5 on
    any window. The trial scores that (:data:`NO_SIGNAL_AUC`), not the AUC of its raw scores, so
    the tuner cannot pick parameters whose model would be served as a constant (the 4-bar collapse).
    """
    fit, es, stack = split_validation(ds.times, train, horizon_ns, embargo_ns)
    cal = calibration_rows(es, stack)
    X, y = ds.X, ds.y
    rows = np.concatenate([cal, test])
    if model == "xgboost":
        import xgboost as xgb

        booster = fit_xgboost(X, y, fit, es, params, cfg)
        p = booster.predict(xgb.DMatrix(X[rows]), output_margin=True)
    elif model == "lightgbm":
        p = fit_lightgbm(X, y, fit, es, params, cfg).predict(X[rows], raw_score=True)
    elif model == "random_forest":
        p = _logit(fit_random_forest(X, y, fit, params, cfg).predict_proba(X[rows])[:, 1])
    else:
        mean = X[fit].astype(np.float64).mean(axis=0)
        std = X[fit].astype(np.float64).std(axis=0)
        std[std < 1e-12] = 1.0
        Z = np.clip((X - mean) / std, -10, 10).astype(np.float32)
        net = fit_lstm(Z, y, fit, es, params, cfg)
        p = lstm_logits(net, Z, rows, int(params["seq_len"]))
    p = np.asarray(p, dtype=np.float64)
    p_cal, p_test = p[: len(cal)], p[len(cal) :]
    if len(cal) and not served_signal(p_cal, y[cal]):
        return NO_SIGNAL_AUC
    return M.roc_auc(y[test], p_test)


def served_signal(scores: np.ndarray, y: np.ndarray) -> bool:
    """Whether a member with these calibration-slice ``scores`` would be served with a signal.

    :func:`hft.ml.models._platt` answers the base rate (a constant) when the fitted slope is not
    positive; constant scores have no slope at all.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if len(scores) < 2 or float(np.ptp(scores)) <= 1e-12:
        return False
    a, _ = _platt(scores, np.asarray(y, dtype=np.float64))
    return a > 0


def tune(
    ds: Dataset,
    dev_rows: np.ndarray,
    seconds: float,
    cfg: FitConfig,
    storage: str | None,
    study_prefix: str,
    embargo_bars: int = 4,
    n_folds: int = 2,
    max_rows: int | dict[str, int] = 60_000,
    n_trials: dict[str, int] | None = None,
    units: dict[str, int] | None = None,
    sampler_key: str = "",
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Run ``n_trials[model]`` trials per model; return the best params and a summary per study.

    The work is fixed up front (trials, each a fit of ``units[model]`` rounds/trees/epochs), never
    cut by the clock, so the result does not depend on the machine's load. ``seconds`` only
    matters when ``n_trials`` is not given (old callers): then one trial per model.
    The first trial of a new study is the defaults, so even a tiny budget yields a sane model.
    A study that already holds finished trials resumes and only runs what is missing to reach
    ``n_trials``: run again, the same study gives the same best trial.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    step = interval_timedelta(ds.interval).value
    horizon_ns, embargo_ns = ds.horizon * step, embargo_bars * step
    params = {k: dict(v) for k, v in DEFAULT_PARAMS.items()}
    size = {**TUNE_UNITS, **(units or {})}
    summary: dict[str, Any] = {}
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    for model in SHARES:
        seq_len = 32  # the longest window any LSTM trial may ask for
        rows = dev_rows[ds.window_ok(seq_len)[dev_rows]]
        cap = max_rows.get(model, 60_000) if isinstance(max_rows, dict) else max_rows
        folds = walk_forward(ds.times, rows, n_folds, 0.3, horizon_ns, embargo_ns, cap)
        seed = sampler_seed(cfg.seed, sampler_key, model)
        study = optuna.create_study(
            study_name=f"{study_prefix}-{OBJECTIVE_VERSION}-{model}",
            storage=storage,
            load_if_exists=True,
            direction="maximize",
            sampler=optuna.samplers.TPESampler(seed=seed),
            pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0),
        )
        if not study.trials:
            study.enqueue_trial(
                {k: v for k, v in DEFAULT_PARAMS[model].items() if k not in (SIZE_KEYS[model], "batch")}
            )

        def objective(trial: Any, model: str = model, folds: list[Any] = folds) -> float:
            p = suggest(trial, model, size)
            aucs = []
            for fold in folds:
                aucs.append(score_model(model, p, ds, fold.train, fold.test, cfg, horizon_ns, embargo_ns))
                trial.report(float(np.mean(aucs)), fold.index)
                if trial.should_prune():
                    raise optuna.TrialPruned()
            return float(np.mean(aucs))

        started = time.monotonic()
        wanted = max(1, int((n_trials or {}).get(model, 1)))
        missing = wanted - sum(t.state in finished for t in study.trials)
        if folds and missing > 0:
            study.optimize(objective, n_trials=missing)
        done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        base = {
            "trials": len(study.trials),
            "planned_trials": wanted,
            "complete": len(done),
            "pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials),
            "seconds": time.monotonic() - started,
            "study": study.study_name,
            "sampler_seed": seed,
            "size": {SIZE_KEYS[model]: int(size[model])},
            "train_rows_cap": cap,
        }
        if done:
            # the best of the first `wanted` finished trials: a study resumed past its plan answers the same
            first = [t for t in study.trials if t.state in finished][:wanted]
            ok = [t for t in first if t.state == optuna.trial.TrialState.COMPLETE] or done
            best = max(ok, key=_value)
            params[model].update(best.params)
            summary[model] = {
                **base,
                "best_auc": float(best.value or float("nan")),
                "best_params": best.params,
            }
        else:
            summary[model] = {**base, "best_auc": float("nan")}
        log.info("tuned %s: %s", model, summary[model])
    return params, summary


def _value(trial: Any) -> float:
    return float(trial.value) if trial.value is not None else float("-inf")
