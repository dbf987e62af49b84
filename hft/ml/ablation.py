"""The issue-23 ablation: horizons, label kinds, models, strategy filters and feature groups, fold by fold.

``python -m hft.ml.train ablation --symbol BTCUSDT --data CSV --out r.json`` runs it. Cheap on purpose
(fixed parameters, one thread, no tuning): LightGBM with fixed parameters, a logistic regression and
their equal-weight logit average, each calibrated (Platt) on the last slice of its training window,
beside the majority and persistence baselines, on consecutive test windows (default: 2-month
windows 2024-01-01 .. 2025-09-01, ten folds). Every training window is purged by the label's horizon
and embargoed by max(4, h) bars; it holds at most ``max_train_rows`` of the most recent bars.

Strategy filters are applied to the same out-of-sample probabilities with the backtest of
``hft evaluate`` (:func:`hft.ml.metrics.backtest`, the bot's rule, positions held h bars, one at a
time): ``thresholds`` (0.55 / 0.45 alone), ``edge`` (thresholds and the expected edge above the round
trip: what ``hft evaluate`` and the bot run) and ``edge+vol`` (``edge``, and only when ``vol_64`` is
above the training window's median: a volatility regime filter).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from hft.ml import metrics as M
from hft.ml.dataset import Dataset, build_dataset, default_feature_set, interval_timedelta, load_bars
from hft.ml.evaluation import VOL_FEATURE, expected_moves
from hft.ml.models import FitConfig, _platt, fit_lightgbm
from hft.ml.splits import purged_before

# fixed, cheap, not tuned (the ablation compares levers, not tuning luck)
ABLATION_LIGHTGBM = {
    "num_leaves": 15,
    "learning_rate": 0.03,
    "min_data_in_leaf": 200,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "lambda_l2": 1.0,
    "num_boost_round": 250,
}
LABEL_CONFIGS: dict[str, dict[str, Any]] = {
    "direction-h1": {"kind": "direction", "horizon": 1},
    "direction-h4": {"kind": "direction", "horizon": 4},
    "direction-h16": {"kind": "direction", "horizon": 16},
    "barrier-h4": {"kind": "barrier", "horizon": 4},
    "barrier-h16": {"kind": "barrier", "horizon": 16},
}
MODELS = ("lightgbm", "logistic", "ensemble")
BASELINES = ("majority", "persistence")
FILTERS = ("thresholds", "edge", "edge+vol")


@dataclass(frozen=True)
class AblationConfig:
    """Test windows, the training cap and the costs of one ablation."""

    test_start: str = "2024-01-01"
    test_end: str = "2025-09-01"
    fold_months: int = 2
    max_train_rows: int = 60_000
    cal_fraction: float = 0.2
    barrier_k: float = 1.0
    n_boot: int = 200


def fold_edges(cfg: AblationConfig) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """Consecutive test windows of ``fold_months`` from ``test_start`` to ``test_end``."""
    t = pd.Timestamp(cfg.test_start, tz="UTC")
    end = pd.Timestamp(cfg.test_end, tz="UTC")
    out = []
    while t < end:
        nxt = min(t + pd.DateOffset(months=cfg.fold_months), end)
        out.append((t, nxt))
        t = nxt
    return out


def _standardise(X: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = X[rows].astype(np.float64).mean(axis=0)
    std = X[rows].astype(np.float64).std(axis=0)
    std[std < 1e-12] = 1.0
    return mean, std


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.asarray(np.log(p / (1 - p)))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-z)))


def fold_predictions(
    ds: Dataset, train: np.ndarray, test: np.ndarray, cols: np.ndarray, cfg: AblationConfig, seed: int
) -> dict[str, np.ndarray]:
    """Calibrated P(up) on ``test`` of LightGBM, logistic and their logit average, fitted on ``train``.

    The models fit on the first 1 - ``cal_fraction`` of the window; each gets one Platt calibration
    on the rest (purged); the ensemble is the average of the two calibrated logits, calibrated again.
    """
    from sklearn.linear_model import LogisticRegression

    step = interval_timedelta(ds.interval).value
    horizon_ns, embargo_ns = ds.horizon * step, max(4, ds.horizon) * step
    t = ds.times[train]
    cut = int(t.min() + (t.max() - t.min()) * (1 - cfg.cal_fraction))
    cal = train[t >= cut]
    fit = purged_before(ds.times, train[t < cut], cut, horizon_ns, embargo_ns)
    X = ds.X[:, cols]
    y = ds.y
    booster = fit_lightgbm(X, y, fit, None, ABLATION_LIGHTGBM, FitConfig(seed=seed, threads=1))
    mean, std = _standardise(X, fit)
    lr = LogisticRegression(C=0.1, max_iter=500)
    lr.fit(np.clip((X[fit] - mean) / std, -10, 10), y[fit])

    def raw(rows: np.ndarray) -> dict[str, np.ndarray]:
        return {
            "lightgbm": _logit(np.asarray(booster.predict(X[rows]))),
            "logistic": np.asarray(lr.decision_function(np.clip((X[rows] - mean) / std, -10, 10))),
        }

    r_cal, r_test = raw(cal), raw(test)
    out: dict[str, np.ndarray] = {}
    cal_logits: dict[str, np.ndarray] = {}
    for name in ("lightgbm", "logistic"):
        a, b = _platt(r_cal[name], y[cal])
        cal_logits[name] = a * r_cal[name] + b
        out[name] = _sigmoid(a * r_test[name] + b)
    avg_cal = (cal_logits["lightgbm"] + cal_logits["logistic"]) / 2
    a, b = _platt(avg_cal, y[cal])
    out["ensemble"] = _sigmoid(a * (_logit(out["lightgbm"]) + _logit(out["logistic"])) / 2 + b)
    up = float(y[train].mean())
    out["majority"] = np.full(len(test), up)
    prev = ds.prev_dir
    after_up = float(y[train][prev[train] == 1].mean()) if (prev[train] == 1).any() else up
    after_down = float(y[train][prev[train] == 0].mean()) if (prev[train] == 0).any() else up
    out["persistence"] = np.where(prev[test] == 1, after_up, after_down)
    return out


def _pnl_ci(pnl: np.ndarray, n_boot: int, block: int = 96, seed: int = 0) -> list[float]:
    """95% moving-block bootstrap interval of the total of a per-decision PnL series (time order)."""
    n = len(pnl)
    if n == 0 or not np.any(pnl):
        return [0.0, 0.0]
    block = min(block, max(1, n // 10))
    rng = np.random.default_rng(seed)
    n_blocks = int(np.ceil(n / block))
    sums = []
    for _ in range(n_boot):
        starts = rng.integers(0, n - block + 1, size=n_blocks)
        idx = (starts[:, None] + np.arange(block)[None, :]).ravel()[:n]
        sums.append(float(pnl[idx].sum()))
    return [float(np.percentile(sums, 2.5)), float(np.percentile(sums, 97.5))]


def strategy_report(
    ds: Dataset,
    rows: np.ndarray,
    p: np.ndarray,
    costs: M.Costs,
    filt: str,
    vol_ok: np.ndarray,
    n_boot: int,
) -> dict[str, Any]:
    """The backtest of one filter on out-of-sample rows (time order), with a PnL interval."""
    step = interval_timedelta(ds.interval).value
    moves = expected_moves(ds, rows) if filt != "thresholds" else None
    c = replace(costs, edge_filter=filt != "thresholds")
    p_used = np.where(vol_ok, p, 0.5) if filt == "edge+vol" else p  # 0.5: no signal under any rule
    fwd = ds.exit_ret[rows]
    bt = M.backtest(p_used, fwd, ds.times[rows], c, moves, ds.horizon * step, ds.symbols[rows], step)
    pnl = np.asarray(bt["decision_pnl"])  # per decision in time order, for the interval
    return {
        "trades": bt["trades"],
        "long_trades": bt["long_trades"],
        "short_trades": bt["short_trades"],
        "avg_gross_edge_bps": bt["avg_gross_edge_bps"],
        "hit_rate": bt["hit_rate"],
        "net_pnl_after_fees": bt["net_pnl_after_fees"],
        "net_pnl_ci95": _pnl_ci(pnl, n_boot),
        "gross_pnl": bt["gross_pnl"],
        "sharpe": bt["sharpe"],
    }


def run_label_config(
    bars: dict[str, pd.DataFrame],
    interval: str,
    start: pd.Timestamp,
    end: pd.Timestamp,
    label: dict[str, Any],
    feature_groups: dict[str, tuple[str, ...] | None],
    feature_version: str | None,
    costs: M.Costs,
    cfg: AblationConfig,
    seed: int = 42,
) -> dict[str, Any]:
    """Every model x feature group x filter for one label configuration, pooled over the folds."""
    features = default_feature_set(feature_version)
    ds = build_dataset(
        bars,
        features,
        interval,
        horizon=int(label["horizon"]),
        start=start,
        end=end,
        label_kind=str(label["kind"]),
        barrier_k=cfg.barrier_k,
        barrier_min_bps=costs.round_trip_bps,
    )
    step = interval_timedelta(interval).value
    horizon_ns, embargo_ns = ds.horizon * step, max(4, ds.horizon) * step
    labeled = ds.labeled()
    labeled = labeled[np.argsort(ds.times[labeled], kind="stable")]
    vol_col = ds.feature_names.index(VOL_FEATURE) if VOL_FEATURE in ds.feature_names else None
    groups = {g: ds.subset_names(names or ds.feature_names) for g, names in feature_groups.items()}
    preds: dict[tuple[str, str], list[np.ndarray]] = {}
    test_rows: list[np.ndarray] = []
    vol_flags: list[np.ndarray] = []
    folds_out = []
    for k, (lo, hi) in enumerate(fold_edges(cfg)):
        t = ds.times[labeled]
        test = labeled[(t > lo.value) & (t <= hi.value)]
        train = purged_before(ds.times, labeled[t <= lo.value], lo.value + 1, horizon_ns, embargo_ns)
        train = train[-cfg.max_train_rows :]
        if len(test) == 0 or len(train) < 1000:
            continue
        started = time.monotonic()
        fold: dict[str, Any] = {
            "fold": k,
            "test_start": str(lo),
            "test_end": str(hi),
            "train_rows": len(train),
            "test_rows": len(test),
            "train_start": str(pd.Timestamp(int(ds.times[train].min()), tz="UTC")),
            "roc_auc": {},
        }
        for g, cols in groups.items():
            out = fold_predictions(ds, train, test, cols, cfg, seed)
            for m, p in out.items():
                if g != "spec" and m in BASELINES:
                    continue
                preds.setdefault((g, m), []).append(p)
                fold["roc_auc"][f"{g}/{m}"] = M.roc_auc(ds.y[test], p)
        if vol_col is not None:
            med = float(np.median(ds.X[train, vol_col]))
            vol_flags.append(ds.X[test, vol_col] >= med)
        else:
            vol_flags.append(np.ones(len(test), dtype=bool))
        fold["seconds"] = time.monotonic() - started
        folds_out.append(fold)
        test_rows.append(test)
    rows = np.concatenate(test_rows)
    vol_ok = np.concatenate(vol_flags)
    y = ds.y[rows]
    results = {}
    for (g, m), ps in preds.items():
        p = np.concatenate(ps)
        rep: dict[str, Any] = M.classification(y, p)
        rep.update(M.bootstrap_ci(y, p, n_boot=cfg.n_boot))
        rep["strategy"] = {f: strategy_report(ds, rows, p, costs, f, vol_ok, cfg.n_boot) for f in FILTERS}
        rep["folds_roc_auc"] = [f["roc_auc"][f"{g}/{m}"] for f in folds_out]
        results[f"{g}/{m}"] = rep
    moves = expected_moves(ds, rows)
    return {
        "label": label,
        "feature_version": ds.feature_version,
        "n_features": {g: len(c) for g, c in groups.items()},
        "decisions": len(rows),
        "up_rate": float(y.mean()),
        "median_expected_move_bps": float(np.nanmedian(moves)) if moves is not None else None,
        "folds": folds_out,
        "results": results,
    }


def run_ablation(
    symbol: str,
    data: str,
    interval: str,
    start: str,
    end: str,
    costs: M.Costs,
    cfg: AblationConfig,
    labels: list[str] | None = None,
    feature_version: str | None = None,
    simple_group: bool = True,
) -> dict[str, Any]:
    """The ablation of one symbol: every label configuration in ``labels`` (default all)."""
    started = time.monotonic()
    bars = load_bars(data, [symbol], interval)
    s = pd.Timestamp(start, tz="UTC")
    e = pd.Timestamp(end, tz="UTC") + pd.Timedelta(days=1)
    features = default_feature_set(feature_version)
    groups: dict[str, tuple[str, ...] | None] = {"spec": None}
    if simple_group:
        groups["simple"] = features.baseline_names
    out: dict[str, Any] = {
        "symbol": symbol,
        "data": str(data),
        "start": start,
        "end": end,
        "config": cfg.__dict__,
        "costs": {
            "round_trip_bps": costs.round_trip_bps,
            "buy": costs.buy_threshold,
            "sell": costs.sell_threshold,
        },
        "lightgbm_params": ABLATION_LIGHTGBM,
        "feature_version": features.version,
        "feature_groups": {g: list(v or features.names) for g, v in groups.items()},
        "folds": [[str(a), str(b)] for a, b in fold_edges(cfg)],
        "labels": {},
    }
    for name in labels or list(LABEL_CONFIGS):
        t = time.monotonic()
        out["labels"][name] = run_label_config(
            bars, interval, s, e, LABEL_CONFIGS[name], groups, feature_version, costs, cfg
        )
        out["labels"][name]["seconds"] = time.monotonic() - t
    out["seconds"] = time.monotonic() - started
    return out


def _ci(v: list[float], fmt: str = "{:.4f}") -> str:
    return "[" + fmt.format(v[0]) + ", " + fmt.format(v[1]) + "]"


def markdown(
    reports: list[dict[str, Any]],
    models: tuple[str, ...] = (*MODELS, *BASELINES),
    groups: tuple[str, ...] = ("spec", "simple"),
) -> str:
    """docs/ml.md's ablation tables from reports of :func:`run_ablation` (one symbol each; several
    reports of one symbol, e.g. another feature spec, are merged): one row per label x features x model."""
    out = []
    by_symbol: dict[str, list[dict[str, Any]]] = {}
    for r in reports:
        by_symbol.setdefault(r["symbol"], []).append(r)
    head = (
        "| label | features | model | accuracy [95% CI] | ROC-AUC [95% CI] | base rate | folds AUC > 0.5 "
        "| trades, thresholds only | net PnL, thresholds only | trades, edge rule | gross edge/trade, edge rule "
        "| net PnL, edge rule [95% CI] | trades, edge + vol filter | net PnL, edge + vol filter [95% CI] |"
    )
    for sym, reps in by_symbol.items():
        out += [f"**{sym}**", "", head, "|" + " --- |" * 14]
        for r in reps:
            for ln, lab in r["labels"].items():
                for key, v in lab["results"].items():
                    group, model = key.split("/")
                    if model not in models or group not in groups:
                        continue
                    feats = lab["feature_version"] if group == "spec" else f"{group} subset"
                    st = v["strategy"]
                    th, ed, ev = st["thresholds"], st["edge"], st["edge+vol"]
                    folds = v["folds_roc_auc"]
                    out.append(
                        f"| {ln} | {feats} | {model} | {v['accuracy']:.4f} {_ci(v['accuracy_ci95'])} "
                        f"| {v['roc_auc']:.4f} {_ci(v['roc_auc_ci95'])} | {v['base_rate']:.4f} "
                        f"| {sum(a > 0.5 for a in folds)}/{len(folds)} | {th['trades']:,} | {th['net_pnl_after_fees']:,.0f} "
                        f"| {ed['trades']:,} | {ed['avg_gross_edge_bps']:.1f} bps "
                        f"| {ed['net_pnl_after_fees']:,.0f} {_ci(ed['net_pnl_ci95'], '{:,.0f}')} "
                        f"| {ev['trades']:,} | {ev['net_pnl_after_fees']:,.0f} {_ci(ev['net_pnl_ci95'], '{:,.0f}')} |"
                    )
        out.append("")
    return "\n".join(out)
