"""Micro benchmarks of single hot-path calls. Keys: ``inference_p99_ms`` (goal ≤ 1 ms),
``feature_update_us`` (goal ≤ 10 µs per tick), ``online_read_p99_ms`` (goal ≤ 1 ms).

Each measure is a function ``measure_*(settings, quick) -> (parameters, results)``; :func:`run`
calls them all and merges their keys, so other areas add their measures here as functions.
"""

from __future__ import annotations

import os
import time
from typing import Any

from bench.common import percentiles
from hft.config import Settings


def measure_inference(settings: Settings, quick: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """One-row ensemble inference (``ServingModel.predict_proba_window``), the API's model call.

    The ensemble is trained here on real BTCUSDT 15m bars with the largest sizes the tuner may
    choose (XGBoost depth 6 x up to 400 rounds, random forest 120 trees of depth 10, LSTM with a
    32-bar window and 24 units), so the number bounds what any registered version costs.
    """
    import numpy as np
    import torch

    from hft.market.ohlcv import read_ohlcv_csv
    from hft.ml.dataset import build_dataset, default_feature_set
    from hft.ml.models import DEFAULT_PARAMS, FitConfig, fit_ensemble
    from hft.ml.registry import ServingModel

    bars = read_ohlcv_csv(settings.data_dir / "klines_15m" / "BTCUSDT_15m_ohlcv_2023-01-01_2025-08-31.csv.gz")
    bars = bars.loc["2025-03-01":"2025-08-31"] if quick else bars.loc["2024-09-01":"2025-08-31"]
    ds = build_dataset({"BTCUSDT": bars}, default_feature_set(), "15m")
    params = {k: dict(v) for k, v in DEFAULT_PARAMS.items()}
    params["xgboost"].update(max_depth=6, min_child_weight=5.0, eta=0.05)
    params["random_forest"].update(n_estimators=120, max_depth=10, min_samples_leaf=50)
    params["lstm"].update(seq_len=32, hidden=24, max_epochs=1 if quick else 3)
    rows = ds.labeled()
    rows = rows[ds.window_ok(32)[rows]]
    step = 15 * 60 * 10**9
    ens, _ = fit_ensemble(
        ds.X,
        ds.y,
        ds.times,
        rows,
        ds.feature_names,
        ds.feature_version,
        params,
        FitConfig(lstm_seconds=10 if quick else 30, model_seconds=300),
        step,
        4 * step,
    )
    model = ServingModel("bench", "0", ens.feature_version, ens.feature_names, ens.seq_len, ens)
    torch.set_num_threads(1)  # what load_serving_model sets for serving
    n = 500 if quick else 5000
    ends = rows[-n:]
    windows = [ds.X[e - ens.seq_len + 1 : e + 1] for e in ends]
    for w in windows[:50]:
        model.predict_proba_window(w)
    lat, cpu = [], []
    for w in windows:
        c = time.thread_time_ns()
        t = time.perf_counter()
        model.predict_proba_window(w)
        lat.append((time.perf_counter() - t) * 1000)
        cpu.append((time.thread_time_ns() - c) / 1e6)
    stats = percentiles(lat)
    cpu_stats = percentiles(cpu)
    parts = {}
    one = np.asarray(windows[0], dtype=np.float32)
    last = one[-1:]
    Z = ens.scale(one)
    from hft.ml.models import lstm_logits

    for name, fn in {
        "xgboost_compiled": lambda: ens.xgb.raw(last),
        "lightgbm_native": lambda: ens.lgb.predict(last, raw_score=True, num_threads=1),
        "random_forest_compiled": lambda: ens.rf.raw(last),
        "lstm_torch": lambda: lstm_logits(ens.lstm, Z, np.array([ens.seq_len - 1]), ens.seq_len),
    }.items():
        ts = []
        for _ in range(min(n, 2000)):
            t = time.perf_counter()
            fn()
            ts.append((time.perf_counter() - t) * 1000)
        parts[name] = percentiles(ts)["p99"]
    parameters = {
        "calls": n,
        "seq_len": ens.seq_len,
        "n_features": len(ens.feature_names),
        "xgboost_trees": len(ens.xgb.roots),
        "forest_trees": len(ens.rf.roots),
        "forest_depth": ens.rf.depth,
        "lstm_hidden": ens.lstm_hidden,
        "torch_threads": 1,
    }
    # wall time includes waiting for a core on a shared machine; thread CPU time is what the call costs
    results = {
        "inference_p50_ms": stats["p50"],
        "inference_p99_ms": stats["p99"],
        "inference_mean_ms": stats["mean"],
        "inference_cpu_p50_ms": cpu_stats["p50"],
        "inference_cpu_p99_ms": cpu_stats["p99"],
        "inference_component_p99_ms": parts,
        "load_average_1m": os.getloadavg()[0],
    }
    return parameters, results


def measure_feature_update(settings: Settings, quick: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per-tick bar + feature update of the feature calculator (``feature_update_us``, goal <= 10 µs)."""
    from bench.features import measure_update

    return measure_update(settings, quick)


def measure_online_read(settings: Settings, quick: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """Online feature read through Feast's Redis online store (``online_read_p99_ms``, goal <= 1 ms)."""
    from bench.features import measure_online

    return measure_online(settings, quick)


def run(settings: Settings, quick: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run every ``measure_*`` function of this module and merge their parameters and results."""
    parameters: dict[str, Any] = {}
    results: dict[str, Any] = {}
    for name, fn in sorted(globals().items()):
        if name.startswith("measure_") and callable(fn):
            p, r = fn(settings, quick)
            parameters[name.removeprefix("measure_")] = p
            results.update(r)
    return parameters, results
