"""Score an existing model on any OHLCV data: what ``hft evaluate`` and the promotion gate run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hft.config import ConfigurationError, Settings, use_mlflow
from hft.market.ohlcv import symbol_from_filename
from hft.ml import metrics as M
from hft.ml.dataset import build_dataset, default_feature_set, interval_timedelta, load_bars
from hft.ml.evaluation import expected_moves, model_report
from hft.ml.models import Ensemble
from hft.ml.registry import load_ensemble


def infer_interval(bars: pd.DataFrame) -> str:
    """The bar interval of a frame indexed by open time (the most common spacing)."""
    if len(bars) < 2:
        raise ConfigurationError("need at least two bars to infer the interval")
    step = pd.Series(bars.index).diff().dropna().mode().iloc[0]
    minutes = int(step.total_seconds() // 60)
    if minutes % 1440 == 0:
        return f"{minutes // 1440}d"
    if minutes % 60 == 0:
        return f"{minutes // 60}h"
    return f"{minutes}m"


def _utc(value: str | None, end_of_day: bool = False) -> pd.Timestamp | None:
    if not value:
        return None
    t = pd.Timestamp(value)
    t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
    if end_of_day and len(value) <= 10:
        t += pd.Timedelta(days=1)
    return t


def score(
    settings: Settings,
    ens: Ensemble,
    bars: dict[str, pd.DataFrame],
    interval: str,
    start: pd.Timestamp | None,
    end: pd.Timestamp | None,
    n_boot: int = 200,
) -> dict[str, Any]:
    """Metrics, bootstrap intervals and the cost-aware backtest of ``ens`` on decisions in [start, end].

    Bars before ``start`` serve only as warm-up of the features and the LSTM's window.
    """
    features = default_feature_set(ens.feature_version)
    if features.names != ens.feature_names:
        raise ConfigurationError(f"model features {ens.feature_names} differ from spec {ens.feature_version}")
    if start is not None:
        # after its warm-up a feature no longer depends on where the series started (hft.features'
        # contract), so older bars than warm-up + one window change nothing and only cost time
        step = interval_timedelta(interval)
        first = start - step * (features.warmup_bars + ens.seq_len + 8)
        bars = {sym: b[b.index >= first] for sym, b in bars.items()}
    # the model's own label (issue 23 item 1): its horizon, kind and barriers; positions held h bars
    ds = build_dataset(
        bars,
        features,
        interval,
        horizon=ens.horizon,
        dead_zone_bps=settings.label_dead_zone_bps,
        label_kind=ens.label_kind,
        barrier_k=float(ens.label_params.get("barrier_k", 1.0)),
        barrier_min_bps=float(ens.label_params.get("barrier_min_bps", 0.0)),
    )
    rows = ds.labeled()
    rows = rows[ds.window_ok(ens.seq_len)[rows]]
    t = ds.times[rows]
    keep = np.ones(len(rows), dtype=bool)
    if start is not None:
        keep &= t > start.value  # a decision at bar close: the first bar opening at `start` closes after it
    if end is not None:
        keep &= t <= end.value
    rows = rows[keep]
    if len(rows) == 0:
        raise ConfigurationError("no labelled decisions in the requested range")
    p = ens.predict_rows(ds.X, rows)
    rep = model_report(
        ds.y[rows],
        p,
        ds.exit_ret[rows],
        ds.times[rows],
        M.Costs.from_settings(settings),
        n_boot,
        move_bps=expected_moves(ds, rows),
        hold_ns=ens.horizon * interval_timedelta(interval).value,
        groups=ds.symbols[rows],
        bar_ns=interval_timedelta(interval).value,
    )
    rep["n"] = len(rows)
    rep["horizon"] = ens.horizon
    rep["label_kind"] = ens.label_kind
    rep["first_decision"] = str(pd.Timestamp(int(ds.times[rows].min()), tz="UTC"))
    rep["last_decision"] = str(pd.Timestamp(int(ds.times[rows].max()), tz="UTC"))
    rep["symbols"] = sorted(bars)
    rep["calibration"] = M.calibration_curve(ds.y[rows], p)
    return rep


def resolve_symbols(
    settings: Settings,
    path: Path,
    symbols: list[str] | None,
    ens: Ensemble,
    info: dict[str, str],
) -> list[str]:
    """Which symbols ``path`` holds: ``--symbol``, else the file name, else the model's own symbol.

    A file without a symbol in its name is the model's training symbol when it was trained on one
    (the ensemble's metadata, or the registry version's ``symbols`` tag for older models); a model
    pooled over several symbols needs ``--symbol``. A directory defaults to ``settings.symbols``.
    """
    if symbols:
        return list(symbols)
    if path.is_dir():
        return list(settings.symbols)
    guessed = symbol_from_filename(path) if path.is_file() else None
    if guessed:
        return [guessed]
    trained = list(ens.symbols) or _tagged_symbols(settings, info)
    if len(trained) == 1:
        return trained
    raise ConfigurationError(
        f"{path.name} names no symbol and the model was trained on {trained or 'unrecorded symbols'}: "
        "pass --symbol"
    )


def _tagged_symbols(settings: Settings, info: dict[str, str]) -> list[str]:
    """The registry version's ``symbols`` tag (what ``hft train`` sets), or [] without one."""
    if "name" not in info or "version" not in info:
        return []
    try:
        from mlflow import MlflowClient

        mv = MlflowClient(tracking_uri=use_mlflow(settings)).get_model_version(info["name"], info["version"])
    except Exception:  # a missing tag only means: ask for --symbol
        return []
    return [s for s in str(mv.tags.get("symbols", "")).split(",") if s]


def evaluate(
    settings: Settings,
    model_uri: str,
    data: str | Path,
    start: str | None,
    end: str | None = None,
    symbols: list[str] | None = None,
) -> dict[str, Any]:
    """Load a model (``models:/name@alias``, ``models:/name/version`` or ``runs:/...``) and score it."""
    ens, info = load_ensemble(settings, model_uri)
    path = Path(str(data))
    syms = resolve_symbols(settings, path, symbols, ens, info)
    if path.is_dir():
        bars = load_bars(path, syms, settings.bar_interval)
    else:
        bars = load_bars(path, syms[:1], settings.bar_interval)
    interval = infer_interval(next(iter(bars.values())))
    rep = score(settings, ens, bars, interval, _utc(start), _utc(end, end_of_day=True))
    rep["model"] = {**info, "feature_version": ens.feature_version, "sequence_length": ens.seq_len}
    rep["interval"] = interval
    return rep
