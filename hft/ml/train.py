"""Train, evaluate walk-forward, log to MLflow and register: what ``hft train`` and the retrain DAG run.

Budget: ``budget_minutes`` sizes every stage (tuning share, row caps, the LSTM's time cap), so the
demo's 3 minutes and a 10-minute retrain both end with a sane, registered model. The budget is
planned, not enforced to the second: fits in flight finish.

mlflow and matplotlib are imported inside functions: they cost seconds at start-up.
"""

from __future__ import annotations

import json
import logging
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hft.config import REPO_ROOT, Settings, use_mlflow
from hft.ml import metrics as M
from hft.ml.dataset import (
    Dataset,
    FeatureSet,
    build_dataset,
    default_feature_set,
    interval_timedelta,
    load_bars,
)
from hft.ml.evaluation import WalkForwardConfig, WalkForwardResult, walk_forward_report
from hft.ml.models import Ensemble, FitConfig, fit_ensemble
from hft.ml.registry import log_ensemble, set_alias, version_tags
from hft.ml.splits import purged_before
from hft.ml.tuning import tune

log = logging.getLogger(__name__)
GATE_BASELINES = ("majority", "persistence")


@dataclass(frozen=True)
class TrainPlan:
    """How a time budget is spent."""

    tune_seconds: float
    fit: FitConfig
    wf: WalkForwardConfig
    tune_max_rows: int

    @classmethod
    def for_budget(cls, minutes: float, seed: int = 42, threads: int = 1) -> TrainPlan:
        """Split ``minutes``: 30% tuning, the rest the walk-forward folds and the final fit.

        Every booster, forest and LSTM fit is capped in wall-clock seconds, so a busy machine
        costs accuracy rather than time.
        """
        s = max(20.0, minutes * 60.0)
        n_folds = 2 if s < 120 else 3
        fits = (n_folds + 1) * 4 + n_folds  # four models per fold and final fit, plus the plain baseline
        per_model = float(np.clip(0.6 * s / fits, 2.0, 60.0))
        max_rows = int(np.clip(s * 300, 20_000, 150_000))
        fit = FitConfig(
            seed=seed,
            threads=threads,
            lstm_seconds=per_model,
            model_seconds=per_model,
            rf_max_rows=min(60_000, max_rows),
            lstm_max_rows=min(60_000, max_rows),
        )
        wf = WalkForwardConfig(n_folds=n_folds, test_fraction=0.25, embargo_bars=4, max_train_rows=max_rows)
        return cls(tune_seconds=0.3 * s, fit=fit, wf=wf, tune_max_rows=max_rows // 2)


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
) -> TrainResult:
    """Build the dataset, tune, evaluate walk-forward against the baselines, and fit the final ensemble."""
    started = time.monotonic()
    commit = git_commit()  # read at start: the tree may move on while a long run trains
    timings: dict[str, float] = {}
    features = features or default_feature_set()
    plan = plan or TrainPlan.for_budget(budget_minutes)
    bars = bars if bars is not None else load_bars(data, symbols, interval)
    # `end` is a date: everything that closed on that day is in
    end_ts = _ts(end)
    if end_ts is not None and len(str(end)) <= 10:
        end_ts = end_ts + pd.Timedelta(days=1)
    ds = build_dataset(
        bars,
        features,
        interval,
        horizon=settings.label_horizon,
        dead_zone_bps=settings.label_dead_zone_bps,
        start=_ts(start),
        end=end_ts,
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
        study_prefix,
        embargo_bars=plan.wf.embargo_bars,
        n_folds=1 if plan.tune_seconds < 60 else 2,
        max_rows=plan.tune_max_rows,
    )
    timings["tune_s"] = time.monotonic() - t
    t = time.monotonic()
    report = walk_forward_report(ds, params, plan.fit, plan.wf, M.Costs.from_settings(settings))
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
        "budget_minutes": budget_minutes,
        "git_commit": commit,
    }
    return TrainResult(
        ensemble=ensemble, report=report, tuning=tuning, params=params, dataset=ds, info=info, timings=timings
    )


def gate_metrics(result: TrainResult) -> dict[str, float]:
    """Out-of-sample metrics of the most recent walk-forward window, the promotion gate's input."""
    last = result.report.folds[-1]
    m = last["models"]
    out = {
        "gate.window_start_ns": float(last["test_start"]),
        "gate.window_end_ns": float(last["test_end"]),
        "gate.roc_auc": m["ensemble"]["roc_auc"],
        "gate.accuracy": m["ensemble"]["accuracy"],
        "gate.log_loss": m["ensemble"]["log_loss"],
        "gate.net_pnl_after_fees": m["ensemble"]["backtest"]["net_pnl_after_fees"],
        "gate.trades": float(m["ensemble"]["backtest"]["trades"]),
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
        mlflow.set_tags({"git_commit": commit, "feature_version": ds.feature_version, "kind": "train"})
        params: dict[str, Any] = {k: (json.dumps(v) if isinstance(v, list) else v) for k, v in info.items()}
        params.update(
            {
                "git_commit": commit,
                "n_features": len(ds.feature_names),
                "seed": 42,
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
        mlflow.log_params(params)
        mlflow.log_metrics(_flat_metrics(result))
        for fold in result.report.folds:
            for model, rep in fold["models"].items():
                mlflow.log_metric(f"fold.{model}.roc_auc", rep["roc_auc"], step=fold["fold"])
                mlflow.log_metric(f"fold.{model}.accuracy", rep["accuracy"], step=fold["fold"])
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
        prefix,
        features=features,
    )
    uri = log_and_register(settings, result, name)
    log.info("registered %s in %.0f s", uri, result.timings["total_s"])
    return uri
