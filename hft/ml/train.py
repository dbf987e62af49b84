"""Train, evaluate walk-forward, log to MLflow and register: what ``hft train`` and the retrain DAG run.

Budget: ``budget_minutes`` sizes every stage (tuning share, row caps, the LSTM's time cap), so the
demo's 3 minutes and a 10-minute retrain both end with a sane, registered model. The budget is
planned, not enforced to the second: fits in flight finish.

mlflow and matplotlib are imported inside functions: they cost seconds at start-up.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import tempfile
import time
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hft.config import REPO_ROOT, Settings, get_settings, use_mlflow
from hft.ml import metrics as M
from hft.ml.dataset import (
    STORE_DATA,
    Dataset,
    FeatureSet,
    build_dataset,
    default_feature_set,
    interval_timedelta,
    load_bars,
)
from hft.ml.evaluation import WalkForwardConfig, WalkForwardResult, walk_forward_report
from hft.ml.models import (
    DEFAULT_PARAMS,
    Ensemble,
    FitConfig,
    fit_ensemble,
    fit_lightgbm,
    fit_lstm,
    fit_random_forest,
    fit_xgboost,
)
from hft.ml.registry import log_ensemble, set_alias, version_tags
from hft.ml.splits import purged_before
from hft.ml.store_frame import store_inputs
from hft.ml.tuning import SHARES, tune

log = logging.getLogger(__name__)
GATE_BASELINES = ("majority", "persistence")


# Seconds of one CPU core per unit of work per 1,000 training rows, for the most expensive corner of
# each search space (XGBoost depth 6, a forest of depth 10 with max_features 0.8, an LSTM of 24 units
# over 32 bars); one unit = one boosting round, one tree, one epoch. Measured on the shared 2-core
# machine (2026-12-06 15:50 UTC, load 6-9, BTCUSDT 15m, 22 features, one thread; measured 0.00081 /
# 0.00042 / 0.0112 / 0.221) with
# `python -m hft.ml.train costs <OHLCV CSV>` and rounded up. They only size the plan: the
# same budget always gives the same plan, so a busy machine costs time, never a different model.
UNIT_COST_S = {"xgboost": 0.0010, "lightgbm": 0.0005, "random_forest": 0.012, "lstm": 0.30}
# the label a model learns when nothing says otherwise (issue 23 item 1: chosen by the ablation in
# docs/ml.md); the horizon defaults to settings.label_horizon
DEFAULT_LABEL_KIND = "direction"
DEFAULT_BARRIER_K = 1.0
BASELINE_ROUNDS = 200  # the plain LightGBM baseline of every walk-forward fold
_MODELS = ("xgboost", "lightgbm", "random_forest", "lstm")
_SIZE_KEYS = {
    "xgboost": "num_boost_round",
    "lightgbm": "num_boost_round",
    "random_forest": "n_estimators",
    "lstm": "max_epochs",
}
_DEFAULT_UNITS = {"xgboost": 400, "lightgbm": 400, "random_forest": 60, "lstm": 6}


@dataclass(frozen=True)
class TrainPlan:
    """How a budget is spent, as work fixed before the first fit: trials, rounds, trees, epochs, rows.

    Nothing in a run reads the clock to decide what to fit: the same data, settings, seed and
    budget give the same plan and the same model whatever else the machine is doing.
    """

    tune_seconds: float
    fit: FitConfig
    wf: WalkForwardConfig
    tune_max_rows: int
    units: dict[str, int] = field(default_factory=lambda: dict(_DEFAULT_UNITS))  # final and fold fits
    tune_units: dict[str, int] = field(default_factory=lambda: dict(_DEFAULT_UNITS))
    tune_trials: dict[str, int] | None = None  # None: derived from tune_seconds and UNIT_COST_S
    tune_folds: int | None = None  # None: 1 under a minute of tuning, else 2
    tune_max_rows_slow: int | None = None  # rows of a forest or LSTM trial (None: tune_max_rows)
    budget_minutes: float | None = None
    estimate_s: dict[str, float] = field(default_factory=dict)

    @classmethod
    def for_budget(cls, minutes: float, seed: int = 42, threads: int = 1) -> TrainPlan:
        """Turn ``minutes`` into work: ~30% tuning, ~50% the walk-forward folds and the final fit.

        Each part's size comes from :data:`UNIT_COST_S` x rows, at the rows caps (an upper bound
        whatever the data), so the plan depends on the budget alone; the remaining ~20% covers the
        dataset, the baselines, the bootstrap and MLflow.
        """
        s = max(20.0, minutes * 60.0)
        n_folds = 2 if s < 120 else 3
        max_rows = int(np.clip(s * 150, 20_000, 120_000))
        slow_rows = min(60_000, max_rows)  # the forest's and the LSTM's row cap
        fit_k, slow_k = 0.8 * max_rows / 1000, 0.8 * slow_rows / 1000  # the fit slice is 80% of a window
        per_ensemble = 0.5 * s / (n_folds + 1)
        share = {"xgboost": 0.2, "lightgbm": 0.1, "random_forest": 0.25, "lstm": 0.45}
        rows_k = {"xgboost": fit_k, "lightgbm": fit_k, "random_forest": slow_k, "lstm": slow_k}
        lo = {"xgboost": 20, "lightgbm": 20, "random_forest": 10, "lstm": 1}
        hi = {"xgboost": 400, "lightgbm": 400, "random_forest": 120, "lstm": 6}
        units = {
            m: int(np.clip(share[m] * per_ensemble / (UNIT_COST_S[m] * rows_k[m]), lo[m], hi[m]))
            for m in _MODELS
        }
        tune_s = 0.3 * s
        tune_rows = int(np.clip(s * 40, 8_000, 30_000))
        tune_rows_slow = tune_rows // 2
        tune_units = {"xgboost": 150, "lightgbm": 150, "random_forest": 30, "lstm": 2}
        return cls(
            tune_seconds=tune_s,
            fit=FitConfig(seed=seed, threads=threads, rf_max_rows=slow_rows, lstm_max_rows=slow_rows),
            wf=WalkForwardConfig(
                n_folds=n_folds, test_fraction=0.25, embargo_bars=4, max_train_rows=max_rows
            ),
            tune_max_rows=tune_rows,
            units=units,
            tune_units=tune_units,
            tune_folds=1,
            tune_max_rows_slow=tune_rows_slow,
            budget_minutes=float(minutes),
        )

    # --- derived ------------------------------------------------------------------------------
    def folds_for_tuning(self) -> int:
        """Walk-forward folds of one tuning trial."""
        return self.tune_folds if self.tune_folds is not None else (1 if self.tune_seconds < 60 else 2)

    def tune_rows(self, model: str) -> int:
        """Training rows of one tuning fold of ``model``."""
        if model in ("random_forest", "lstm") and self.tune_max_rows_slow:
            return self.tune_max_rows_slow
        return self.tune_max_rows

    def trial_seconds(self, model: str) -> float:
        """Planned CPU seconds of one tuning trial of ``model`` (worst corner of its space)."""
        rows_k = 0.8 * self.tune_rows(model) / 1000
        return UNIT_COST_S[model] * rows_k * self.tune_units[model] * self.folds_for_tuning()

    def trials(self) -> dict[str, int]:
        """Trials per model: given, or as many as the tuning seconds buy (at least 3; 1 below 10 s)."""
        if self.tune_trials is not None:
            return dict(self.tune_trials)
        floor = 3 if self.tune_seconds >= 10 else 1
        return {m: max(floor, int(SHARES[m] * self.tune_seconds / self.trial_seconds(m))) for m in _MODELS}

    def ensemble_seconds(self) -> float:
        """Planned CPU seconds of one ensemble fit at the rows caps."""
        rows = self.wf.max_train_rows or 120_000
        fit_k = 0.8 * rows / 1000
        slow_k = 0.8 * min(rows, self.fit.rf_max_rows) / 1000
        k = {"xgboost": fit_k, "lightgbm": fit_k, "random_forest": slow_k, "lstm": slow_k}
        return float(sum(UNIT_COST_S[m] * k[m] * self.units[m] for m in _MODELS))

    def estimate(self) -> dict[str, float]:
        """Planned CPU seconds per stage (an upper bound: early stopping usually ends fits sooner)."""
        rows_k = 0.8 * (self.wf.max_train_rows or 120_000) / 1000
        tune = sum(n * self.trial_seconds(m) for m, n in self.trials().items())
        baseline = UNIT_COST_S["lightgbm"] * rows_k * BASELINE_ROUNDS
        ens = self.ensemble_seconds()
        return {
            "tune_s": tune,
            "walk_forward_s": self.wf.n_folds * (ens + baseline),
            "final_fit_s": ens,
            "total_s": tune + self.wf.n_folds * (ens + baseline) + ens,
        }

    def apply(self, params: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """``params`` with each model's size (rounds, trees, epochs) set to the plan's."""
        out = {m: dict(p) for m, p in params.items()}
        for m in _MODELS:
            if m in out:
                out[m][_SIZE_KEYS[m]] = int(self.units[m])
        return out

    def as_dict(self) -> dict[str, Any]:
        """The plan as JSON (logged to MLflow as ``plan.json`` and ``plan.*`` params)."""
        return {
            "budget_minutes": self.budget_minutes,
            "seed": self.fit.seed,
            "threads": self.fit.threads,
            "unit_cost_s_per_1k_rows": dict(UNIT_COST_S),
            "tune": {
                "trials": self.trials(),
                "folds": self.folds_for_tuning(),
                "rows": {m: self.tune_rows(m) for m in _MODELS},
                "units": dict(self.tune_units),
                "trial_seconds": {m: round(self.trial_seconds(m), 3) for m in _MODELS},
            },
            "fit": {
                "units": dict(self.units),
                "max_train_rows": self.wf.max_train_rows,
                "rf_max_rows": self.fit.rf_max_rows,
                "lstm_max_rows": self.fit.lstm_max_rows,
            },
            "walk_forward": {
                "n_folds": self.wf.n_folds,
                "test_fraction": self.wf.test_fraction,
                "embargo_bars": self.wf.embargo_bars,
                "n_boot": self.wf.n_boot,
            },
            "estimate_cpu_s": {k: round(v, 1) for k, v in self.estimate().items()},
        }

    def key(self) -> str:
        """A short stable digest of the plan (part of the Optuna study names)."""
        raw = json.dumps({k: v for k, v in self.as_dict().items() if k != "estimate_cpu_s"}, sort_keys=True)
        return f"{zlib.crc32(raw.encode()):08x}"


@dataclass
class TrainResult:
    """Everything a training run produced (before it is logged)."""

    ensemble: Ensemble
    report: WalkForwardResult
    tuning: dict[str, Any]
    params: dict[str, dict[str, Any]]
    dataset: Dataset
    info: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)
    plan: dict[str, Any] = field(default_factory=dict)  # TrainPlan.as_dict(): the work, fixed up front


def _label_suffix(horizon: int | None, label_kind: str) -> str:
    """Part of the Optuna study name: studies of another label are other studies (the default: none)."""
    if horizon is None and label_kind == DEFAULT_LABEL_KIND:
        return ""
    return f"-{label_kind}-h{horizon if horizon is not None else 'default'}"


def git_commit() -> str:
    """The repository's HEAD commit (``unknown`` outside a checkout)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=5, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _ts(value: str | None) -> pd.Timestamp | None:
    if not value:
        return None
    t = pd.Timestamp(value)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def train(
    settings: Settings,
    symbols: list[str],
    interval: str,
    data: str | Path,
    start: str | None,
    end: str | None,
    budget_minutes: float,
    storage: str | None,
    study_prefix: str,
    features: FeatureSet | None = None,
    bars: dict[str, pd.DataFrame] | None = None,
    plan: TrainPlan | None = None,
    seed: int = 42,
    horizon: int | None = None,
    label_kind: str = DEFAULT_LABEL_KIND,
    barrier_k: float = DEFAULT_BARRIER_K,
) -> TrainResult:
    """Build the dataset, tune, evaluate walk-forward against the baselines, and fit the final ensemble.

    The label (issue 23 item 1): ``label_kind`` ``direction`` or ``barrier`` over ``horizon`` bars
    (``settings.label_horizon`` when None); barriers at max(``barrier_k`` x vol_64 x sqrt(h), the
    round trip). It is the model's configuration: logged, stored with the model (``ensemble.json``)
    and tagged on the version, so ``hft evaluate`` and the bot trade at that horizon.
    """
    started = time.monotonic()
    commit = git_commit()  # read at start: the tree may move on while a long run trains
    timings: dict[str, float] = {}
    features = features or default_feature_set()
    plan = plan or TrainPlan.for_budget(budget_minutes, seed=seed)
    h = int(horizon if horizon is not None else settings.label_horizon)
    if h > plan.wf.embargo_bars:  # serial correlation of h-bar labels: embargo at least the horizon
        plan = replace(plan, wf=replace(plan.wf, embargo_bars=h))
    costs = M.Costs.from_settings(settings)
    label_params = (
        {"barrier_k": float(barrier_k), "barrier_min_bps": costs.round_trip_bps}
        if label_kind == "barrier"
        else {}
    )
    bars = bars if bars is not None else load_bars(data, symbols, interval)
    # `end` is a date: everything that closed on that day is in
    end_ts = _ts(end)
    if end_ts is not None and len(str(end)) <= 10:
        end_ts = end_ts + pd.Timedelta(days=1)
    ds = build_dataset(
        bars,
        features,
        interval,
        horizon=h,
        dead_zone_bps=settings.label_dead_zone_bps,
        start=_ts(start),
        end=end_ts,
        label_kind=label_kind,
        barrier_k=float(label_params.get("barrier_k", barrier_k)),
        barrier_min_bps=float(label_params.get("barrier_min_bps", 0.0)),
    )
    timings["dataset_s"] = time.monotonic() - started
    step = interval_timedelta(interval).value
    horizon_ns, embargo_ns = ds.horizon * step, plan.wf.embargo_bars * step
    labeled = ds.labeled()
    first_test = int(
        ds.times[labeled].min()
        + (ds.times[labeled].max() - ds.times[labeled].min()) * (1 - plan.wf.test_fraction)
    )
    dev = purged_before(ds.times, labeled, first_test, horizon_ns, embargo_ns)
    t = time.monotonic()
    params, tuning = tune(
        ds,
        dev,
        plan.tune_seconds,
        plan.fit,
        storage,
        f"{study_prefix}-{'+'.join(sorted(bars))}-{plan.key()}",
        embargo_bars=plan.wf.embargo_bars,
        n_folds=plan.folds_for_tuning(),
        max_rows={m: plan.tune_rows(m) for m in SHARES},
        n_trials=plan.trials(),
        units=plan.tune_units,
        sampler_key="+".join(sorted(bars)),
    )
    params = plan.apply(params)
    timings["tune_s"] = time.monotonic() - t
    t = time.monotonic()
    report = walk_forward_report(ds, params, plan.fit, plan.wf, costs)
    timings["walk_forward_s"] = time.monotonic() - t
    t = time.monotonic()
    seq_len = int(params["lstm"]["seq_len"])
    rows = labeled[ds.window_ok(seq_len)[labeled]]
    rows = rows[np.argsort(ds.times[rows], kind="stable")]
    if plan.wf.max_train_rows and len(rows) > plan.wf.max_train_rows:
        rows = rows[-plan.wf.max_train_rows :]
    ensemble, _ = fit_ensemble(
        ds.X,
        ds.y,
        ds.times,
        rows,
        ds.feature_names,
        ds.feature_version,
        params,
        plan.fit,
        horizon_ns,
        embargo_ns,
    )
    # the ensemble serves only if it beat its best member walk-forward; else that member does
    ensemble.serve(str(report.selection.get("served", "ensemble")))
    timings["final_fit_s"] = time.monotonic() - t
    timings["total_s"] = time.monotonic() - started
    info = {
        "symbols": sorted(bars),
        "interval": interval,
        "data": str(data),
        "start": start,
        "end": end,
        "rows": len(ds),
        "labeled_rows": len(labeled),
        "final_train_rows": len(rows),
        "data_first_decision": str(pd.Timestamp(int(ds.times.min()), tz="UTC")),
        "data_last_decision": str(pd.Timestamp(int(ds.times.max()), tz="UTC")),
        "final_train_start": str(pd.Timestamp(int(ds.times[rows].min()), tz="UTC")),
        "final_train_end": str(pd.Timestamp(int(ds.times[rows].max()), tz="UTC")),
        "feature_version": ds.feature_version,
        "horizon": ds.horizon,
        "label_kind": ds.label_kind,
        **{f"label.{k}": v for k, v in ds.label_params.items()},
        "budget_minutes": budget_minutes,
        "git_commit": commit,
    }
    for model in (ensemble, report.last_fold_model):
        if model is not None:
            model.symbols = tuple(sorted(bars))
            model.horizon, model.label_kind, model.label_params = (
                ds.horizon,
                ds.label_kind,
                dict(ds.label_params),
            )
    return TrainResult(
        ensemble=ensemble,
        report=report,
        tuning=tuning,
        params=params,
        dataset=ds,
        info=info,
        timings=timings,
        plan=plan.as_dict(),
    )


def gate_metrics(result: TrainResult) -> dict[str, float]:
    """Out-of-sample metrics of the most recent walk-forward window, the promotion gate's input."""
    last = result.report.folds[-1]
    m = last["models"]
    served = str(result.report.selection.get("served", "ensemble"))  # what the version serves
    out = {
        "gate.window_start_ns": float(last["test_start"]),
        "gate.window_end_ns": float(last["test_end"]),
        "gate.roc_auc": m[served]["roc_auc"],
        "gate.accuracy": m[served]["accuracy"],
        "gate.log_loss": m[served]["log_loss"],
        "gate.net_pnl_after_fees": m[served]["backtest"]["net_pnl_after_fees"],
        "gate.trades": float(m[served]["backtest"]["trades"]),
    }
    for b in ("majority", "persistence", "logistic", "lightgbm_plain"):
        out[f"gate.{b}.roc_auc"] = m[b]["roc_auc"]
        out[f"gate.{b}.net_pnl_after_fees"] = m[b]["backtest"]["net_pnl_after_fees"]
    return out


def _flat_metrics(result: TrainResult) -> dict[str, float]:
    out: dict[str, float] = {}
    for model, rep in result.report.overall.items():
        for k, v in rep.items():
            if k == "backtest":
                for bk, bv in v.items():
                    if isinstance(bv, dict):  # long_short: the diagnostic long + short book
                        out.update({f"wf.{model}.bt.{bk}.{sk}": float(sv) for sk, sv in bv.items()})
                    else:
                        out[f"wf.{model}.bt.{bk}"] = float(bv)
            elif k.endswith("_ci95"):
                out[f"wf.{model}.{k}_lo"], out[f"wf.{model}.{k}_hi"] = float(v[0]), float(v[1])
            else:
                out[f"wf.{model}.{k}"] = float(v)
    out.update(gate_metrics(result))
    for k, v in result.timings.items():
        out[f"time.{k}"] = float(v)
    for model, s in result.tuning.items():
        out[f"tune.{model}.best_auc"] = float(s["best_auc"])
        out[f"tune.{model}.trials"] = float(s["trials"])
    return {k: v for k, v in out.items() if np.isfinite(v)}


def _plan_params(plan: dict[str, Any]) -> dict[str, Any]:
    """The plan's work as flat ``plan.*`` params (the full plan is the artifact ``plan.json``)."""
    if not plan:
        return {}
    out: dict[str, Any] = {"plan.tune_folds": plan["tune"]["folds"]}
    for m, n in plan["tune"]["trials"].items():
        out[f"plan.tune_trials.{m}"] = n
    for m, n in plan["fit"]["units"].items():
        out[f"plan.units.{m}"] = n
    out["plan.max_train_rows"] = plan["fit"]["max_train_rows"]
    out["plan.n_folds"] = plan["walk_forward"]["n_folds"]
    out["plan.estimate_cpu_s"] = plan["estimate_cpu_s"]["total_s"]
    return out


def _plots(result: TrainResult) -> dict[str, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figs = {}
    cal = result.report.calibration
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect")
    ax.plot(cal["mean_predicted"], cal["observed"], "o-", label="ensemble")
    lo = min([*cal["mean_predicted"], *cal["observed"], 0.4])
    hi = max([*cal["mean_predicted"], *cal["observed"], 0.6])
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("predicted P(up)")
    ax.set_ylabel("observed up rate")
    ax.set_title("Calibration (walk-forward, out of sample)")
    ax.legend()
    figs["plots/calibration.png"] = fig
    fig, ax = plt.subplots(figsize=(8, 4))
    for name, eq in result.report.equity.items():
        if eq["times"]:
            ax.plot(pd.to_datetime(eq["times"], unit="ns"), eq["equity"], label=name)
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_title("Equity after fees, confident signals only (walk-forward)")
    ax.set_ylabel("PnL (quote)")
    ax.legend()
    figs["plots/equity.png"] = fig
    imp = result.ensemble.importance.get("lightgbm", {})
    if imp:
        names = sorted(imp, key=lambda n: imp[n])
        fig, ax = plt.subplots(figsize=(6, max(3, 0.25 * len(names))))
        ax.barh(names, [imp[n] for n in names])
        ax.set_title("Feature importance (LightGBM gain, final model)")
        figs["plots/feature_importance.png"] = fig
    return figs


def log_and_register(settings: Settings, result: TrainResult, model_name: str) -> str:
    """Log params, metrics, plots, report and the model to MLflow; register; alias ``challenger``."""
    import matplotlib.pyplot as plt
    import mlflow

    mlflow.set_tracking_uri(use_mlflow(settings))
    mlflow.set_experiment(model_name)
    ds, info = result.dataset, result.info
    commit = str(info.get("git_commit") or git_commit())
    with mlflow.start_run(run_name=f"train-{'+'.join(info['symbols'])}-{info['interval']}") as run:
        served = str(result.report.selection.get("served", "ensemble"))
        mlflow.set_tags(
            {
                "git_commit": commit,
                "feature_version": ds.feature_version,
                "kind": "train",
                "served_model": served,
                "served_reason": str(result.report.selection.get("reason", "")),
            }
        )
        params: dict[str, Any] = {k: (json.dumps(v) if isinstance(v, list) else v) for k, v in info.items()}
        params.update(
            {
                "git_commit": commit,
                "n_features": len(ds.feature_names),
                "seed": result.plan.get("seed", 42),
                "taker_fee_bps": settings.taker_fee_bps,
                "slippage_bps": settings.slippage_bps,
                "buy_threshold": settings.buy_threshold,
                "sell_threshold": settings.sell_threshold,
                "label_dead_zone_bps": settings.label_dead_zone_bps,
            }
        )
        for model, p in result.params.items():
            for k, v in p.items():
                params[f"{model}.{k}"] = v
        params.update(_plan_params(result.plan))
        mlflow.log_params(params)
        mlflow.log_dict(result.plan, "plan.json")
        mlflow.log_metrics(_flat_metrics(result))
        for fold in result.report.folds:
            for model, rep in fold["models"].items():
                mlflow.log_metric(f"fold.{model}.roc_auc", rep["roc_auc"], step=fold["fold"])
                mlflow.log_metric(f"fold.{model}.accuracy", rep["accuracy"], step=fold["fold"])
            if "ensemble_beats_best_member" in fold:
                mlflow.log_metric(
                    "fold.ensemble_beats_best_member",
                    float(fold["ensemble_beats_best_member"]),
                    step=fold["fold"],
                )
        mlflow.log_dict(result.report.summary(), "walk_forward_report.json")
        mlflow.log_dict(result.tuning, "tuning.json")
        mlflow.log_dict(
            {
                "feature_names": list(ds.feature_names),
                "feature_version": ds.feature_version,
                "baseline_features": list(ds.baseline_names),
            },
            "features.json",
        )
        for path, fig in _plots(result).items():
            mlflow.log_figure(fig, path)
            plt.close(fig)
        if result.report.last_fold_model is not None:
            # the gate's fold model: `hft evaluate --model runs:/<run>/gate_model` re-scores its window
            with tempfile.TemporaryDirectory() as tmp:
                result.report.last_fold_model.save(Path(tmp))
                mlflow.log_artifacts(tmp, "gate_model")
        example = _input_example(result)
        model_info = log_ensemble(result.ensemble, example, model_name)
        version = str(model_info.registered_model_version)
        run_id = run.info.run_id
    set_alias(settings, model_name, "challenger", version)
    gate = gate_metrics(result)
    version_tags(
        settings,
        model_name,
        version,
        {
            "feature_version": ds.feature_version,
            "sequence_length": str(result.ensemble.seq_len),
            "symbols": ",".join(info["symbols"]),
            "interval": info["interval"],
            "data": info["data"],
            "train_end": info["final_train_end"],
            "git_commit": commit,
            "run_id": run_id,
            "gate_window_start_ns": str(int(gate["gate.window_start_ns"])),
            "gate_window_end_ns": str(int(gate["gate.window_end_ns"])),
            "served_model": served,
            "served_reason": str(result.report.selection.get("reason", "")),
            # what the bot sizes its expected move by (hft.trading.strategy.model_move_bps)
            "horizon": str(ds.horizon),
            "label_kind": ds.label_kind,
            **{k: str(v) for k, v in ds.label_params.items()},
        },
    )
    return f"models:/{model_name}/{version}"


def _input_example(result: TrainResult) -> pd.DataFrame:
    ds = result.dataset
    L = result.ensemble.seq_len
    ok = np.flatnonzero(ds.window_ok(L))
    last = int(ok[-1])
    rows = np.arange(last - L - 2, last + 1)
    rows = rows[rows >= ds.run_start[last]]
    return pd.DataFrame(ds.X[rows].astype(np.float64), columns=list(ds.feature_names))


def train_and_register(
    settings: Settings,
    symbols: list[str],
    interval: str,
    data: str | Path,
    start: str | None,
    end: str | None,
    budget_minutes: float,
    model_name: str | None = None,
    horizon: int | None = None,
    label_kind: str = DEFAULT_LABEL_KIND,
) -> str:
    """Train on ``data`` for ``symbols`` (pooled), log and register; return ``models:/NAME/VERSION``.

    The new version gets alias ``challenger``; only :func:`hft.ml.promote.promote` moves ``champion``.
    """
    name = model_name or settings.model_name
    features = default_feature_set()
    prefix = f"{name}-{interval}-{features.version}"
    result = train(
        settings,
        symbols,
        interval,
        data,
        start,
        end,
        budget_minutes,
        settings.optuna_url,
        f"{prefix}{_label_suffix(horizon, label_kind)}",
        features=features,
        horizon=horizon,
        label_kind=label_kind,
    )
    uri = log_and_register(settings, result, name)
    log.info("registered %s in %.0f s", uri, result.timings["total_s"])
    return uri


def measure_unit_costs(data: str | Path, symbol: str = "BTCUSDT", rows: int = 20_000) -> dict[str, float]:
    """CPU seconds per unit per 1,000 rows of each model at the expensive corner of its search space.

    What :data:`UNIT_COST_S` was set from (rounded up): ``python -m hft.ml.train costs <OHLCV CSV>``.
    """
    ds = build_dataset(load_bars(data, [symbol], "15m"), default_feature_set(), "15m", horizon=1)
    ok = ds.labeled()
    ok = ok[ds.window_ok(32)[ok]]
    fit, es = ok[-rows - 4000 : -4000], ok[-3900:]
    cfg = FitConfig(threads=1)
    k = rows / 1000
    out = {}
    sizes = {"xgboost": 50, "lightgbm": 50, "random_forest": 10, "lstm": 1}
    worst: dict[str, dict[str, Any]] = {
        "xgboost": {"max_depth": 6, "min_child_weight": 5.0, "eta": 0.2, "num_boost_round": 50},
        "lightgbm": {"num_leaves": 63, "min_data_in_leaf": 50, "learning_rate": 0.2, "num_boost_round": 50},
        "random_forest": {"n_estimators": 10, "max_depth": 10, "min_samples_leaf": 50, "max_features": 0.8},
        "lstm": {"seq_len": 32, "hidden": 24, "max_epochs": 1},
    }
    Z = np.clip((ds.X - ds.X[fit].mean(0)) / (ds.X[fit].std(0) + 1e-9), -10, 10).astype(np.float32)
    for m in _MODELS:
        p = {**DEFAULT_PARAMS[m], **worst[m]}
        t = time.process_time()
        if m == "xgboost":
            b = fit_xgboost(ds.X, ds.y, fit, es, p, cfg)
            units = b.num_boosted_rounds() + 30  # early stopping trained 30 rounds past the best
        elif m == "lightgbm":
            units = fit_lightgbm(ds.X, ds.y, fit, None, p, cfg).num_trees()
        elif m == "random_forest":
            fit_random_forest(ds.X, ds.y, fit, p, cfg)
            units = sizes[m]
        else:
            fit_lstm(Z, ds.y, fit, es, p, cfg)
            units = sizes[m]
        out[m] = (time.process_time() - t) / max(1, units) / k
    return out


def research_summary(result: TrainResult, seconds: float) -> dict[str, Any]:
    """The walk-forward numbers of a run as JSON (what docs/ml.md's tables are filled from)."""
    o = result.report.overall
    keys = ("roc_auc", "roc_auc_ci95", "accuracy", "accuracy_ci95", "base_rate", "log_loss", "backtest")
    return {
        "seconds": seconds,
        "cpu_seconds": time.process_time(),
        "timings": result.timings,
        "plan": result.plan,
        "tuning": {m: {k: v for k, v in s.items() if k != "study"} for m, s in result.tuning.items()},
        "params": result.params,
        "selection": result.report.selection,
        "served": result.ensemble.served,
        "overall": {m: {k: o[m][k] for k in keys if k in o[m]} for m in o},
        "folds": [
            {
                "fold": f["fold"],
                "test_start": str(pd.Timestamp(int(f["test_start"]), tz="UTC")),
                "test_end": str(pd.Timestamp(int(f["test_end"]), tz="UTC")),
                "train_rows": f["train_rows"],
                "test_rows": f["test_rows"],
                "combiner_weights": f.get("combiner_weights"),
                "best_member": f.get("best_member"),
                "ensemble_beats_best_member": f.get("ensemble_beats_best_member"),
                "roc_auc": {m: r["roc_auc"] for m, r in f["models"].items()},
                "backtest": {m: r["backtest"] for m, r in f["models"].items()},
            }
            for f in result.report.folds
        ],
        "info": result.info,
    }


def train_and_register_from_store(
    settings: Settings,
    symbols: list[str],
    interval: str,
    start: str | None,
    end: str | None,
    budget_minutes: float,
    model_name: str | None = None,
    horizon: int | None = None,
    label_kind: str = DEFAULT_LABEL_KIND,
) -> str:
    """:func:`hft.ml.train.train_and_register` with the frame from the store; returns the URI.

    The run's ``data`` param and the version's ``data`` tag say ``store``; the promotion gate
    then re-scores the champion on ``market.bars`` (:func:`hft.ml.dataset.load_bars`).
    """
    name = model_name or settings.model_name
    base = default_feature_set()
    inputs = store_inputs(settings, symbols, interval, start, end, base, horizon=horizon)
    result = train(
        settings,
        symbols,
        interval,
        STORE_DATA,
        start,
        end,
        budget_minutes,
        settings.optuna_url,
        f"{name}-{interval}-{base.version}{_label_suffix(horizon, label_kind)}",
        features=inputs.features,
        bars=inputs.bars,
        horizon=horizon,
        label_kind=label_kind,
    )
    result.info["store_backfilled_rows"] = int(sum(inputs.backfilled.values()))
    uri = log_and_register(settings, result, name)
    log.info("registered %s from the store in %.0f s", uri, result.timings["total_s"])
    return uri


def main(argv: list[str] | None = None) -> None:
    """``python -m hft.ml.train walk-forward --symbol S --data CSV --budget-minutes B --out r.json``: what
    ``hft train`` runs, without MLflow (in-memory Optuna, nothing registered); or
    ``python -m hft.ml.train costs CSV``: the per-unit costs behind :data:`UNIT_COST_S`."""
    ap = argparse.ArgumentParser(prog="python -m hft.ml.train")
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("costs")
    c.add_argument("data")
    w = sub.add_parser("walk-forward")
    w.add_argument("--symbol", action="append", required=True)
    w.add_argument("--data", required=True)
    w.add_argument("--interval", default="15m")
    w.add_argument("--start", default="2023-01-01")
    w.add_argument("--end", default="2025-08-31")
    w.add_argument("--budget-minutes", type=float, default=10.0)
    w.add_argument("--seed", type=int, default=42)
    w.add_argument("--horizon", type=int, default=None, help="label horizon in bars (settings.label_horizon)")
    w.add_argument("--label", choices=("direction", "barrier"), default=DEFAULT_LABEL_KIND)
    w.add_argument("--out", required=True)
    ab = sub.add_parser("ablation", help="issue 23's ablation: horizons, labels, models, filters, features")
    ab.add_argument("--symbol", required=True)
    ab.add_argument("--data", required=True)
    ab.add_argument("--interval", default="15m")
    ab.add_argument("--start", default="2023-01-01")
    ab.add_argument("--end", default="2025-08-31")
    ab.add_argument("--test-start", default="2024-01-01")
    ab.add_argument("--test-end", default="2025-09-01")
    ab.add_argument("--fold-months", type=int, default=2)
    ab.add_argument("--label", action="append", help="label configurations (default all): direction-h1 ...")
    ab.add_argument("--feature-version", default=None)
    ab.add_argument("--no-simple", action="store_true", help="skip the simple-feature group")
    ab.add_argument("--out", required=True)
    tb = sub.add_parser(
        "ablation-table", help="docs/ml.md's ablation tables (markdown) from ablation reports"
    )
    tb.add_argument("reports", nargs="+")
    tb.add_argument("--model", action="append", help="models to list (default all and the baselines)")
    tb.add_argument("--group", action="append", help="feature groups to list: spec, simple (default both)")
    a = ap.parse_args(argv)
    if a.cmd == "ablation-table":
        from hft.ml.ablation import MODELS, markdown

        reps = [json.loads(Path(p).read_text()) for p in a.reports]
        models = tuple(a.model) if a.model else (*MODELS, "majority", "persistence")
        print(markdown(reps, models, tuple(a.group) if a.group else ("spec", "simple")))
        return
    if a.cmd == "costs":
        print(json.dumps(measure_unit_costs(a.data), indent=2))
        return
    if a.cmd == "ablation":
        from hft.ml.ablation import AblationConfig, run_ablation

        cfg = AblationConfig(test_start=a.test_start, test_end=a.test_end, fold_months=a.fold_months)
        rep = run_ablation(
            a.symbol,
            a.data,
            a.interval,
            a.start,
            a.end,
            M.Costs.from_settings(get_settings()),
            cfg,
            labels=a.label,
            feature_version=a.feature_version,
            simple_group=not a.no_simple,
        )
        rep["git_commit"] = git_commit()
        Path(a.out).write_text(json.dumps(rep, indent=1, default=str) + "\n")
        print(f"{a.out}: {rep['seconds']:.0f} s")
        return
    load_before = os.getloadavg()
    t = time.monotonic()
    result = train(
        get_settings(),
        list(a.symbol),
        a.interval,
        a.data,
        a.start,
        a.end,
        a.budget_minutes,
        None,
        f"research-{time.time_ns()}",
        seed=a.seed,
        horizon=a.horizon,
        label_kind=a.label,
    )
    out = research_summary(result, time.monotonic() - t)
    out["load_average_before"], out["load_average_after"] = list(load_before), list(os.getloadavg())
    Path(a.out).write_text(json.dumps(out, indent=1, default=str) + "\n")
    print(f"{a.out}: {out['seconds']:.0f} s, served {out['served']}")


if __name__ == "__main__":
    main()
