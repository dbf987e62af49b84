"""Walk-forward evaluation of the ensemble, its four models and the baselines, fold by fold.

scikit-learn is imported inside a function: it costs seconds at start-up.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hft.ml import metrics as M
from hft.ml.dataset import Dataset, interval_timedelta
from hft.ml.models import COMPONENTS, FitConfig, fit_ensemble, fit_lightgbm
from hft.ml.splits import walk_forward
from hft.trading.strategy import expected_move_bps

BASELINES = ("majority", "persistence", "logistic", "lightgbm_plain")
PLAIN_LIGHTGBM = {
    "num_leaves": 31,
    "learning_rate": 0.05,
    "min_data_in_leaf": 100,
    "feature_fraction": 1.0,
    "bagging_fraction": 1.0,
    "lambda_l2": 0.0,
    "num_boost_round": 200,
}


@dataclass
class WalkForwardConfig:
    """Folds, purge/embargo and caps of one walk-forward evaluation."""

    n_folds: int = 3
    test_fraction: float = 0.25
    embargo_bars: int = 4
    max_train_rows: int | None = 120_000
    n_boot: int = 200


def baseline_predictions(
    ds: Dataset, train: np.ndarray, test: np.ndarray, cfg: FitConfig
) -> dict[str, np.ndarray]:
    """Probabilities of the four baselines on ``test``, each fitted on ``train`` only."""
    from sklearn.linear_model import LogisticRegression

    y = ds.y
    up = float(y[train].mean())
    out = {"majority": np.full(len(test), up)}
    # persistence: the training frequency of an up move after an up (or down) move
    p_after_up = float(y[train][ds.prev_dir[train] == 1].mean()) if (ds.prev_dir[train] == 1).any() else up
    p_after_down = float(y[train][ds.prev_dir[train] == 0].mean()) if (ds.prev_dir[train] == 0).any() else up
    out["persistence"] = np.where(ds.prev_dir[test] == 1, p_after_up, p_after_down)
    mean = ds.X[train].astype(np.float64).mean(axis=0)
    std = ds.X[train].astype(np.float64).std(axis=0)
    std[std < 1e-12] = 1.0
    lr = LogisticRegression(C=0.1, max_iter=500)
    lr.fit(np.clip((ds.X[train] - mean) / std, -10, 10), y[train])
    out["logistic"] = lr.predict_proba(np.clip((ds.X[test] - mean) / std, -10, 10))[:, 1]
    cols = ds.subset_names(ds.baseline_names or ds.feature_names)
    Xb = ds.X[:, cols]
    booster = fit_lightgbm(Xb, y, train, None, PLAIN_LIGHTGBM, cfg)
    out["lightgbm_plain"] = np.asarray(booster.predict(Xb[test]))
    return out


VOL_FEATURE = "vol_64"  # per-bar volatility behind the expected move (hft.trading.strategy)


def expected_moves(ds: Dataset, rows: np.ndarray) -> np.ndarray | None:
    """Expected move over the label horizon (bps) at each decision row, from the past only.

    None when the feature set has no ``vol_64`` (the backtest then trades on thresholds alone).
    """
    if VOL_FEATURE not in ds.feature_names:
        return None
    col = ds.feature_names.index(VOL_FEATURE)
    k = float(ds.label_params.get("barrier_k", 1.0))
    floor = float(ds.label_params.get("barrier_min_bps", 0.0))
    return np.array(
        [expected_move_bps(float(v), ds.horizon, ds.label_kind, k, floor) for v in ds.X[rows, col].tolist()]
    )


_ARRAYS = ("equity", "equity_times", "decision_pnl", "entry_times", "exit_times")  # not in reports


def model_report(
    y: np.ndarray,
    p: np.ndarray,
    fwd: np.ndarray,
    times: np.ndarray,
    costs: M.Costs,
    n_boot: int,
    seed: int = 0,
    move_bps: np.ndarray | None = None,
    hold_ns: int = 0,
    groups: np.ndarray | None = None,
    bar_ns: int | None = None,
) -> dict[str, Any]:
    """Classification metrics with bootstrap intervals and the cost-aware backtest for one model.

    ``backtest`` trades the bot's book (:func:`hft.ml.metrics.backtest`: the bot's rule, thresholds
    and, given ``move_bps``, expected edge above the round trip; long-only, one position per
    ``groups`` value (symbol), closed after ``hold_ns``, the horizon, by the bot's lifecycle);
    ``fwd`` must be the return of that time exit (``Dataset.exit_ret``). ``backtest.threshold_*``
    are the thresholds alone, ``backtest.long_short`` the same signals long and short, for comparison.
    """
    rep: dict[str, Any] = M.classification(y, p)
    if n_boot:
        rep.update(M.bootstrap_ci(y, p, n_boot=n_boot, seed=seed))
    bt = M.backtest(p, fwd, times, costs, move_bps, hold_ns, groups, bar_ns)
    rep["backtest"] = {k: v for k, v in bt.items() if k not in _ARRAYS}
    if move_bps is not None and costs.edge_filter:
        plain = M.backtest(p, fwd, times, costs, None, hold_ns, groups, bar_ns)
        for k in ("trades", "net_pnl_after_fees", "avg_gross_edge_bps"):
            rep["backtest"][f"threshold_{k}"] = plain[k]
    return rep


@dataclass
class WalkForwardResult:
    """Per-fold and overall reports plus the out-of-fold predictions (for plots)."""

    folds: list[dict[str, Any]] = field(default_factory=list)
    overall: dict[str, dict[str, Any]] = field(default_factory=dict)
    oof_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    oof: dict[str, np.ndarray] = field(default_factory=dict)
    calibration: dict[str, list[float]] = field(default_factory=dict)
    equity: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    last_fold_model: Any = None  # the ensemble scored on the last window (logged so it can be re-scored)
    selection: dict[str, Any] = field(default_factory=dict)  # which model serves, and why (select_served)

    def summary(self) -> dict[str, Any]:
        """JSON-ready report (no arrays of predictions)."""
        return {
            "folds": self.folds,
            "overall": self.overall,
            "calibration": self.calibration,
            "selection": self.selection,
            "seconds": self.seconds,
        }


def walk_forward_report(
    ds: Dataset,
    params: dict[str, dict[str, Any]],
    fit_cfg: FitConfig,
    wf: WalkForwardConfig,
    costs: M.Costs,
) -> WalkForwardResult:
    """Fit the ensemble and the baselines fold by fold; score every model out of sample."""
    started = time.monotonic()
    step = interval_timedelta(ds.interval).value
    horizon_ns, embargo_ns = ds.horizon * step, wf.embargo_bars * step
    seq_len = int(params["lstm"]["seq_len"])
    rows = ds.labeled()
    rows = rows[ds.window_ok(seq_len)[rows]]
    folds = walk_forward(
        ds.times, rows, wf.n_folds, wf.test_fraction, horizon_ns, embargo_ns, wf.max_train_rows
    )
    result = WalkForwardResult()
    preds: dict[str, list[np.ndarray]] = {}
    all_test = []
    for fold in folds:
        ens, timings = fit_ensemble(
            ds.X,
            ds.y,
            ds.times,
            fold.train,
            ds.feature_names,
            ds.feature_version,
            params,
            fit_cfg,
            horizon_ns,
            embargo_ns,
        )
        logits = ens.component_logits(ds.X, ens.scale(ds.X), fold.test)
        # every member calibrated on the same slice as the ensemble, so their backtests compare
        fold_preds = {name: ens.combined(logits, name) for name in ("ensemble", *COMPONENTS)}
        fold_preds.update(baseline_predictions(ds, fold.train, fold.test, fit_cfg))
        y, fwd, t = ds.y[fold.test], ds.exit_ret[fold.test], ds.times[fold.test]
        moves = expected_moves(ds, fold.test)
        fold_rep: dict[str, Any] = {
            "fold": fold.index,
            "train_rows": len(fold.train),
            "test_rows": len(fold.test),
            "train_start": int(ds.times[fold.train].min()),
            "train_end": int(ds.times[fold.train].max()),
            "test_start": fold.test_start,
            "test_end": fold.test_end,
            "fit_seconds": timings,
            "combiner_weights": dict(zip(COMPONENTS, ens.combiners["ensemble"][0], strict=True)),
            "models": {
                name: model_report(
                    y,
                    p,
                    fwd,
                    t,
                    costs,
                    n_boot=0,
                    move_bps=moves,
                    hold_ns=horizon_ns,
                    groups=ds.symbols[fold.test],
                    bar_ns=step,
                )
                for name, p in fold_preds.items()
            },
        }
        member_auc = {name: fold_rep["models"][name]["roc_auc"] for name in COMPONENTS}
        best_member = max(member_auc, key=lambda n: member_auc[n])
        fold_rep["best_member"] = best_member
        fold_rep["ensemble_beats_best_member"] = bool(
            fold_rep["models"]["ensemble"]["roc_auc"] >= member_auc[best_member]
        )
        result.folds.append(fold_rep)
        result.last_fold_model = ens
        for name, p in fold_preds.items():
            preds.setdefault(name, []).append(p)
        all_test.append(fold.test)
    if not all_test:
        raise ValueError("walk-forward produced no folds: too little data for the requested split")
    result.oof_rows = np.concatenate(all_test)
    result.oof = {name: np.concatenate(ps) for name, ps in preds.items()}
    y, fwd, t = ds.y[result.oof_rows], ds.exit_ret[result.oof_rows], ds.times[result.oof_rows]
    moves = expected_moves(ds, result.oof_rows)
    for name, p in result.oof.items():
        result.overall[name] = model_report(
            y,
            p,
            fwd,
            t,
            costs,
            n_boot=wf.n_boot,
            move_bps=moves,
            hold_ns=horizon_ns,
            groups=ds.symbols[result.oof_rows],
            bar_ns=step,
        )
    result.selection = select_served(result)
    if result.last_fold_model is not None:
        result.last_fold_model.serve(result.selection["served"])
    result.calibration = M.calibration_curve(y, result.oof["ensemble"])
    for name in ("ensemble", "lightgbm_plain"):
        bt = M.backtest(result.oof[name], fwd, t, costs, moves, horizon_ns, ds.symbols[result.oof_rows], step)
        result.equity[name] = {"times": bt["equity_times"], "equity": bt["equity"]}
    result.seconds = time.monotonic() - started
    return result


def select_served(result: WalkForwardResult) -> dict[str, Any]:
    """Serve the ensemble unless one member beats it both on ROC-AUC over all test windows pooled
    **and** in a strict majority of the windows; then that member, calibrated.

    Two conditions because the learned models sit within ~0.001 AUC of each other: the pooled
    comparison alone flips on noise. The per-fold record also says in how many windows the ensemble
    beat the best member of that window (a harder test: the member is picked with hindsight).
    """
    names = ("ensemble", *COMPONENTS)
    auc = {name: float(result.overall[name]["roc_auc"]) for name in names}
    folds = [f for f in result.folds if "models" in f]
    member_wins = {
        m: sum(f["models"][m]["roc_auc"] > f["models"]["ensemble"]["roc_auc"] for f in folds)
        for m in COMPONENTS
    }
    best_member = max(COMPONENTS, key=lambda n: auc[n])
    n = len(folds)
    challenger = (
        best_member if auc[best_member] > auc["ensemble"] and member_wins[best_member] * 2 > n else None
    )
    served = challenger or "ensemble"
    wins = [bool(f["ensemble_beats_best_member"]) for f in result.folds]
    if challenger:
        reason = (
            f"{challenger} beats the ensemble: walk-forward AUC {auc[challenger]:.4f} > {auc['ensemble']:.4f} "
            f"and in {member_wins[challenger]} of {n} windows"
        )
    else:
        reason = (
            f"ensemble walk-forward AUC {auc['ensemble']:.4f}, best member {best_member} {auc[best_member]:.4f} "
            f"(better than the ensemble in {member_wins[best_member]} of {n} windows)"
        )
    return {
        "served": served,
        "best_member": best_member,
        "auc": auc,
        "member_beats_ensemble_folds": member_wins,
        "ensemble_beats_best_member_folds": wins,
        "reason": reason + f"; the ensemble beat the best member of {sum(wins)} of {len(wins)} windows",
    }
