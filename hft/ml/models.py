"""The four models and their ensemble: XGBoost, LightGBM, a random forest and an LSTM in PyTorch.

Each fit gets a training slice and a later validation slice (purged). The validation slice's
first half early-stops the boosters and the LSTM; its second half fits the combiners: an
equal-weight average of the four (standardised) logits with one Platt calibration, and a Platt
calibration of each member alone, so serving can use the best member when the average does not
beat it. Seeds are fixed
and every library runs single-process-deterministic settings, so a run is reproducible.

torch, XGBoost, LightGBM and scikit-learn are imported inside functions: they cost seconds at
start-up.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hft.ml.forest import CompiledForest, compile_sklearn_forest, compile_xgboost
from hft.ml.splits import validation_split

if TYPE_CHECKING:
    import pandas as pd

ARTIFACT_KEY = "ensemble"  # the ensemble's directory among a registered model's artifacts

COMPONENTS = ("xgboost", "lightgbm", "random_forest", "lstm")
_CLIP = 10.0  # z-scores beyond this are outliers the LSTM should not chase

DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "xgboost": {
        "max_depth": 4,
        "eta": 0.05,
        "subsample": 0.8,
        "colsample_bytree": 0.8,
        "min_child_weight": 50.0,
        "lambda": 5.0,
        "num_boost_round": 400,
    },
    "lightgbm": {
        "num_leaves": 15,
        "learning_rate": 0.05,
        "min_data_in_leaf": 400,
        "feature_fraction": 0.8,
        "bagging_fraction": 0.8,
        "lambda_l2": 5.0,
        "num_boost_round": 400,
    },
    "random_forest": {"n_estimators": 60, "max_depth": 8, "min_samples_leaf": 200, "max_features": 0.5},
    "lstm": {"seq_len": 16, "hidden": 16, "lr": 3e-3, "weight_decay": 1e-4, "max_epochs": 6, "batch": 512},
}


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-z)))


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.asarray(np.log(p / (1 - p)))


@dataclass
class FitConfig:
    """How one fit works: threads, seed, row caps of the forest and the LSTM.

    No fit is ever cut by the clock: its size (boosting rounds, trees, epochs) comes from the
    params, which :class:`hft.ml.train.TrainPlan` fixes before any fit starts, so the same data,
    params and seed give the same model whatever else the machine is doing.
    """

    seed: int = 42
    # one thread: on a shared 2-core machine OpenMP workers spin-wait against each other
    threads: int = 1
    lstm_seconds: float | None = None  # ignored (was a wall-clock cap); kept for old callers
    rf_max_rows: int = 60_000
    lstm_max_rows: int = 60_000
    model_seconds: float | None = None  # ignored (was a wall-clock cap); kept for old callers


def windows(Z: np.ndarray, rows: np.ndarray, seq_len: int) -> np.ndarray:
    """Stack the ``seq_len`` rows ending at each of ``rows`` (n, seq_len, k); callers check window_ok."""
    return Z[rows[:, None] + np.arange(-seq_len + 1, 1)[None, :]]


def make_lstm(n_features: int, hidden: int) -> Any:
    """Build the LSTM: one layer over the window, a linear head on the last step's state."""
    import torch
    from torch import nn

    class LSTMNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(n_features, hidden, batch_first=True)
            self.head = nn.Linear(hidden, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out, _ = self.lstm(x)
            return self.head(out[:, -1, :]).squeeze(-1)  # type: ignore[no-any-return]

    return LSTMNet()


def fit_lstm(
    Z: np.ndarray,
    y: np.ndarray,
    fit_rows: np.ndarray,
    es_rows: np.ndarray,
    params: dict[str, Any],
    cfg: FitConfig,
) -> Any:
    """Train the LSTM on windows ending at ``fit_rows``; keep the epoch with the best early-stop loss."""
    import torch

    torch.manual_seed(cfg.seed)
    torch.set_num_threads(1)  # small matrices: extra threads only add spin-waiting on a busy machine
    L = int(params["seq_len"])
    rng = np.random.default_rng(cfg.seed)
    if len(fit_rows) > cfg.lstm_max_rows:
        fit_rows = fit_rows[-cfg.lstm_max_rows :]  # the most recent history matters most
    net = make_lstm(Z.shape[1], int(params["hidden"]))
    opt = torch.optim.Adam(
        net.parameters(), lr=float(params["lr"]), weight_decay=float(params["weight_decay"])
    )
    loss_fn = torch.nn.BCEWithLogitsLoss()
    Xe = torch.from_numpy(windows(Z, es_rows, L))
    ye = torch.from_numpy(y[es_rows].astype(np.float32))
    best, best_state, bad = float("inf"), None, 0
    batch = int(params["batch"])
    for _epoch in range(int(params["max_epochs"])):
        net.train()
        order = rng.permutation(fit_rows)
        for i in range(0, len(order), batch):
            rows = order[i : i + batch]
            xb = torch.from_numpy(windows(Z, rows, L))
            yb = torch.from_numpy(y[rows].astype(np.float32))
            opt.zero_grad()
            loss = loss_fn(net(xb), yb)
            loss.backward()
            opt.step()
        net.eval()
        with torch.inference_mode():
            val = float(loss_fn(net(Xe), ye))
        if val < best - 1e-5:
            best, bad = val, 0
            best_state = {k: v.clone() for k, v in net.state_dict().items()}
        else:
            bad += 1
        if bad >= 2:
            break
    if best_state is not None:
        net.load_state_dict(best_state)
    net.eval()
    return net


def lstm_logits(net: Any, Z: np.ndarray, rows: np.ndarray, seq_len: int, chunk: int = 8192) -> np.ndarray:
    """LSTM logits for windows ending at ``rows``."""
    import torch

    out = []
    with torch.inference_mode():
        for i in range(0, len(rows), chunk):
            out.append(net(torch.from_numpy(windows(Z, rows[i : i + chunk], seq_len))).numpy())
    return np.concatenate(out).astype(np.float64) if out else np.zeros(0)


def fit_xgboost(
    X: np.ndarray, y: np.ndarray, fit: np.ndarray, es: np.ndarray, params: dict[str, Any], cfg: FitConfig
) -> Any:
    """Train an XGBoost booster (hist) with early stopping on ``es``."""
    import xgboost as xgb

    p = {k: v for k, v in params.items() if k != "num_boost_round"}
    p.update(
        {
            "objective": "binary:logistic",
            "eval_metric": "logloss",
            "tree_method": "hist",
            "nthread": cfg.threads,
            "seed": cfg.seed,
        }
    )
    dfit = xgb.DMatrix(X[fit], label=y[fit])
    des = xgb.DMatrix(X[es], label=y[es])
    booster = xgb.train(
        p,
        dfit,
        int(params["num_boost_round"]),
        evals=[(des, "es")],
        early_stopping_rounds=30,
        verbose_eval=False,
    )
    # keep only the trees up to the best iteration so the compiled copy matches
    return booster[: booster.best_iteration + 1]


def fit_lightgbm(
    X: np.ndarray,
    y: np.ndarray,
    fit: np.ndarray,
    es: np.ndarray | None,
    params: dict[str, Any],
    cfg: FitConfig,
) -> Any:
    """Train a LightGBM booster; with ``es`` it early-stops and is cut at the best iteration."""
    import lightgbm as lgb

    p = {k: v for k, v in params.items() if k != "num_boost_round"}
    p.update(
        {
            "objective": "binary",
            "verbose": -1,
            "num_threads": cfg.threads,
            "seed": cfg.seed,
            "deterministic": True,
            "force_row_wise": True,
            "bagging_freq": 1 if p.get("bagging_fraction", 1) < 1 else 0,
        }
    )
    dfit = lgb.Dataset(X[fit], label=y[fit], free_raw_data=True)
    if es is None:
        return lgb.train(p, dfit, int(params["num_boost_round"]))
    des = lgb.Dataset(X[es], label=y[es], reference=dfit)
    booster = lgb.train(
        p,
        dfit,
        int(params["num_boost_round"]),
        valid_sets=[des],
        callbacks=[lgb.early_stopping(30, verbose=False)],
    )
    booster.model_from_string(booster.model_to_string(num_iteration=booster.best_iteration))
    return booster


def fit_random_forest(
    X: np.ndarray, y: np.ndarray, fit: np.ndarray, params: dict[str, Any], cfg: FitConfig
) -> Any:
    """Train a lean random forest (shallow, big leaves, row-capped) of exactly ``n_estimators`` trees."""
    from sklearn.ensemble import RandomForestClassifier

    rows = fit[-cfg.rf_max_rows :] if len(fit) > cfg.rf_max_rows else fit
    rf = RandomForestClassifier(
        n_estimators=int(params["n_estimators"]),
        max_depth=int(params["max_depth"]),
        min_samples_leaf=int(params["min_samples_leaf"]),
        max_features=float(params["max_features"]),
        n_jobs=cfg.threads,
        random_state=cfg.seed,
    )
    rf.fit(X[rows], y[rows])
    return rf


@dataclass
class Ensemble:
    """The fitted ensemble; everything serving needs, natively (no MLflow, no pickles)."""

    feature_names: tuple[str, ...]
    feature_version: str
    seq_len: int
    scaler_mean: np.ndarray
    scaler_std: np.ndarray
    xgb: CompiledForest
    lgb: Any  # lightgbm.Booster
    rf: CompiledForest
    lstm: Any  # torch module
    lstm_hidden: int
    stack_coef: np.ndarray  # (4,) weights on the components' logits
    stack_intercept: float
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    importance: dict[str, dict[str, float]] = field(default_factory=dict)
    symbols: tuple[str, ...] = ()  # what it was trained on (``hft evaluate`` names a file's symbol by it)
    # every way to turn the four logits into P(up), each a linear map (coef, intercept) fitted at
    # fit time: "ensemble" (equal-weight average + one calibration) and each member on its own;
    # `served` says which one `stack_coef`/`stack_intercept` hold (see :meth:`serve`)
    combiners: dict[str, tuple[list[float], float]] = field(default_factory=dict)
    served: str = "ensemble"
    # what it predicts (issue 23 item 1): the label over `horizon` bars; the backtest of `hft evaluate`
    # holds positions that long and the bot sizes the expected move by it
    horizon: int = 1
    label_kind: str = "direction"
    label_params: dict[str, float] = field(default_factory=dict)

    def serve(self, name: str) -> None:
        """Make ``combine`` answer with combiner ``name`` (``ensemble`` or one member, calibrated)."""
        if name not in self.combiners:
            raise ValueError(f"no combiner {name!r}; have {sorted(self.combiners)}")
        coef, intercept = self.combiners[name]
        self.stack_coef = np.asarray(coef, dtype=np.float64)
        self.stack_intercept = float(intercept)
        self.served = name

    def combined(self, logits: np.ndarray, name: str) -> np.ndarray:
        """P(up) of combiner ``name`` (whatever is served) from the four logits."""
        coef, intercept = self.combiners[name]
        return _sigmoid(logits @ np.asarray(coef, dtype=np.float64) + float(intercept))

    def scale(self, X: np.ndarray) -> np.ndarray:
        """Standardise with the training slice's mean/std (clipped), float32."""
        Z = (np.asarray(X, dtype=np.float64) - self.scaler_mean) / self.scaler_std
        return np.asarray(np.clip(Z, -_CLIP, _CLIP), dtype=np.float32)

    def component_logits(self, X: np.ndarray, Z: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Logits (n, 4) of the four models for decision rows ``rows`` of raw ``X``/scaled ``Z``."""
        last = X[rows]
        cols = [
            self.xgb.raw(last),
            np.asarray(self.lgb.predict(last, raw_score=True, num_threads=1 if len(rows) == 1 else 0)),
            _logit(self.rf.raw(last)),
            lstm_logits(self.lstm, Z, rows, self.seq_len),
        ]
        return np.column_stack(cols)

    def combine(self, logits: np.ndarray) -> np.ndarray:
        """The stacker: calibrated probability of an up move."""
        return _sigmoid(logits @ self.stack_coef + self.stack_intercept)

    def predict_rows(self, X: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Probabilities for decision rows of a stacked feature matrix (windows must be complete)."""
        return self.combine(self.component_logits(X, self.scale(X), rows))

    def predict_window(self, window: np.ndarray) -> float:
        """Probability for one decision: ``window`` (seq_len, n_features), last row = decision bar."""
        w = np.asarray(window, dtype=np.float32)
        if w.shape != (self.seq_len, len(self.feature_names)):
            raise ValueError(f"window shape {w.shape}, expected {(self.seq_len, len(self.feature_names))}")
        row = np.array([self.seq_len - 1])
        return float(self.predict_rows(w, row)[0])

    # --- persistence: a directory of native files --------------------------------------------
    def save(self, path: Path) -> None:
        """Write the ensemble as native files: XGBoost/RF compiled arrays, LightGBM text, LSTM state."""
        import torch

        path.mkdir(parents=True, exist_ok=True)
        self.xgb.save(path / "xgboost_compiled.npz")
        self.rf.save(path / "random_forest_compiled.npz")
        self.lgb.save_model(str(path / "lightgbm.txt"))
        torch.save(self.lstm.state_dict(), path / "lstm.pt")
        meta = {
            "feature_names": list(self.feature_names),
            "feature_version": self.feature_version,
            "seq_len": self.seq_len,
            "scaler_mean": self.scaler_mean.tolist(),
            "scaler_std": self.scaler_std.tolist(),
            "lstm_hidden": self.lstm_hidden,
            "stack_coef": self.stack_coef.tolist(),
            "stack_intercept": self.stack_intercept,
            "components": list(COMPONENTS),
            "params": self.params,
            "symbols": list(self.symbols),
            "combiners": {k: [list(c), float(b)] for k, (c, b) in self.combiners.items()},
            "served": self.served,
            "horizon": self.horizon,
            "label_kind": self.label_kind,
            "label_params": self.label_params,
        }
        (path / "ensemble.json").write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, path: Path) -> Ensemble:
        """Read an ensemble written by :meth:`save`."""
        import lightgbm as lgb
        import torch

        meta = json.loads((path / "ensemble.json").read_text())
        names = tuple(meta["feature_names"])
        net = make_lstm(len(names), int(meta["lstm_hidden"]))
        net.load_state_dict(torch.load(path / "lstm.pt", weights_only=True))
        net.eval()
        return cls(
            feature_names=names,
            feature_version=str(meta["feature_version"]),
            seq_len=int(meta["seq_len"]),
            scaler_mean=np.asarray(meta["scaler_mean"]),
            scaler_std=np.asarray(meta["scaler_std"]),
            xgb=CompiledForest.load(path / "xgboost_compiled.npz"),
            lgb=lgb.Booster(model_file=str(path / "lightgbm.txt")),
            rf=CompiledForest.load(path / "random_forest_compiled.npz"),
            lstm=net,
            lstm_hidden=int(meta["lstm_hidden"]),
            stack_coef=np.asarray(meta["stack_coef"]),
            stack_intercept=float(meta["stack_intercept"]),
            params=meta.get("params", {}),
            symbols=tuple(meta.get("symbols", ())),
            combiners={k: (list(c), float(b)) for k, (c, b) in meta.get("combiners", {}).items()},
            served=str(meta.get("served", "ensemble")),
            horizon=int(meta.get("horizon", 1)),  # models before issue 23 item 1: the 1-bar direction
            label_kind=str(meta.get("label_kind", "direction")),
            label_params={k: float(v) for k, v in meta.get("label_params", {}).items()},
        )


def split_validation(
    times: np.ndarray, rows: np.ndarray, horizon_ns: int, embargo_ns: int, val_fraction: float = 0.2
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training rows → (fit, early-stop, stack) slices in time order, purged at each cut."""
    fit, val = validation_split(times, rows, val_fraction, horizon_ns, embargo_ns)
    es, stack = validation_split(times, val, 0.5, horizon_ns, embargo_ns)
    return fit, es, stack


def calibration_rows(es: np.ndarray, stack: np.ndarray) -> np.ndarray:
    """The rows the combiners' calibrations fit on: the early-stop slice and the stack slice."""
    return np.concatenate([es, stack])


def fit_ensemble(
    X: np.ndarray,
    y: np.ndarray,
    times: np.ndarray,
    rows: np.ndarray,
    feature_names: tuple[str, ...],
    feature_version: str,
    params: dict[str, dict[str, Any]],
    cfg: FitConfig,
    horizon_ns: int,
    embargo_ns: int,
) -> tuple[Ensemble, dict[str, float]]:
    """Fit the four models and the combiners on training ``rows`` (all labelled, windows complete).

    Returns the ensemble and the seconds each part took.
    """
    timings: dict[str, float] = {}
    fit, es, stack = split_validation(times, rows, horizon_ns, embargo_ns)
    mean = X[fit].astype(np.float64).mean(axis=0)
    std = X[fit].astype(np.float64).std(axis=0)
    std[std < 1e-12] = 1.0
    t = time.monotonic()
    booster = fit_xgboost(X, y, fit, es, params["xgboost"], cfg)
    xgb_c = compile_xgboost(booster, X[fit[:1]])
    timings["xgboost"] = time.monotonic() - t
    t = time.monotonic()
    lgbm = fit_lightgbm(X, y, fit, es, params["lightgbm"], cfg)
    timings["lightgbm"] = time.monotonic() - t
    t = time.monotonic()
    rf = fit_random_forest(X, y, fit, params["random_forest"], cfg)
    rf_c = compile_sklearn_forest(rf)
    timings["random_forest"] = time.monotonic() - t
    t = time.monotonic()
    scaler = Ensemble(
        feature_names,
        feature_version,
        int(params["lstm"]["seq_len"]),
        mean,
        std,
        xgb_c,
        lgbm,
        rf_c,
        None,
        int(params["lstm"]["hidden"]),
        np.zeros(4),
        0.0,
    )
    Z = scaler.scale(X)
    net = fit_lstm(Z, y, fit, es, params["lstm"], cfg)
    scaler.lstm = net
    timings["lstm"] = time.monotonic() - t
    # the calibrations see the early-stop and the stack slices (the last 20% of the window, purged
    # from the fit slice): at a 4-bar horizon the stack slice alone (10%) holds a quarter as many
    # independent labels as at 1 bar, and on it a weak member's slope came out <= 0 by noise, for
    # three members at once (docs/ml.md, "the 4-bar collapse"); the early-stop slice only chose
    # the number of rounds / epochs, a small optimism in a two-number calibration
    cal = calibration_rows(es, stack)
    logits = scaler.component_logits(X, Z, cal)
    scaler.combiners = fit_combiners(logits, y[cal])
    scaler.serve("ensemble")
    scaler.params = params
    scaler.importance = {
        "xgboost": {
            feature_names[int(k[1:])]: float(v) for k, v in booster.get_score(importance_type="gain").items()
        },
        "lightgbm": dict(
            zip(feature_names, lgbm.feature_importance("gain").astype(float).tolist(), strict=True)
        ),
        "random_forest": dict(
            zip(feature_names, rf.feature_importances_.astype(float).tolist(), strict=True)
        ),
    }
    return scaler, timings


def _platt(score: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """One calibration: P(up) = sigmoid(a * score + b), a >= 0 (a weak signal never flips sign)."""
    from sklearn.linear_model import LogisticRegression

    if len(np.unique(y)) < 2:
        return 0.0, float(_logit(np.array([float(np.mean(y)) if len(y) else 0.5]))[0])
    lr = LogisticRegression(C=1e4, max_iter=1000)
    lr.fit(score.reshape(-1, 1), y)
    a, b = float(lr.coef_[0, 0]), float(lr.intercept_[0])
    if a < 0:  # the slice says the signal points the wrong way: trust neither, answer the base rate
        a, b = 0.0, float(_logit(np.array([float(np.mean(y))]))[0])
    return a, b


def fit_combiners(logits: np.ndarray, y: np.ndarray) -> dict[str, tuple[list[float], float]]:
    """Linear maps from the four logits to a calibrated P(up), fitted on the calibration slice.

    Each member gets its own Platt calibration (slope >= 0: one whose slice says it points the
    wrong way answers the base rate), so serving can fall back to the best member when the
    ensemble does not beat it (:meth:`Ensemble.serve`). ``ensemble``: the logits of the members
    whose own slope is positive, each centred and scaled by its own mean and spread on the slice,
    averaged with equal weights, then one Platt calibration (two numbers). A member its own
    calibration turns into a constant weighs nothing in the average either: averaging it in made
    the whole ensemble constant when three of four pointed the wrong way on a small slice (the
    4-bar collapse, docs/ml.md). With no such member, all four are averaged (and a non-positive
    slope answers the base rate). Replaces the four-weight stacker whose weights flipped sign
    between folds.
    """
    k = logits.shape[1]
    out: dict[str, tuple[list[float], float]] = {}
    live = np.zeros(k, dtype=bool)
    for i, name in enumerate(COMPONENTS):
        ai, bi = _platt(logits[:, i], y)
        coef = np.zeros(k)
        coef[i] = ai
        out[name] = (coef.tolist(), bi)
        live[i] = ai > 0
    if not live.any():
        live[:] = True
    m = logits.mean(axis=0)
    sd = logits.std(axis=0)
    sd[sd < 1e-12] = 1.0
    w = np.where(live, 1.0 / (int(live.sum()) * sd), 0.0)
    avg = (logits - m) @ w
    a, b = _platt(avg, y)
    out["ensemble"] = ((a * w).tolist(), float(b - a * float(m @ w)))
    return out


def predict_frame(ens: Ensemble, df: pd.DataFrame) -> np.ndarray:
    """Probabilities for the rows of a time-ordered feature frame of one symbol.

    Row ``i`` needs ``seq_len`` complete rows ending at ``i``; rows without them get NaN.
    """
    missing = [n for n in ens.feature_names if n not in df.columns]
    if missing:
        raise ValueError(f"feature frame lacks {missing}")
    X = df[list(ens.feature_names)].to_numpy(dtype=np.float32)
    n, L = len(X), ens.seq_len
    out = np.full(n, np.nan)
    if n < L:
        return out
    complete = ~np.isnan(X).any(axis=1)
    # a row is usable when the L rows ending at it are all complete
    run = np.convolve(complete.astype(np.int64), np.ones(L, dtype=np.int64), mode="full")[:n]
    rows = np.flatnonzero((run == L) & (np.arange(n) >= L - 1))
    if len(rows):
        Xf = np.where(np.isnan(X), 0.0, X).astype(np.float32)
        out[rows] = ens.predict_rows(Xf, rows)
    return out
