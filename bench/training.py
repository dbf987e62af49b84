"""Training time: a full retrain with tuning (goal ≤ 15 minutes on 2 cores). Key: ``seconds``.

Runs what ``hft train`` runs (dataset, Optuna per model, walk-forward report with baselines,
final ensemble) on the shared 15m history of ``settings.symbols`` pooled, 2023-01-01 to
2025-08-31, with an 8-minute budget (``--quick``: BTCUSDT June-August 2025, 0.2 minutes). Optuna
uses in-memory storage and nothing is registered, so it needs no stack; the MLflow logging and
registration add about 15 s on the test stack (see docs/ml.md).
"""

from __future__ import annotations

import time
from typing import Any

from hft.config import Settings


def run(settings: Settings, quick: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train once and report wall seconds per stage and the walk-forward headline numbers."""
    from hft.ml.train import train

    symbols = ["BTCUSDT"] if quick else list(settings.symbols)
    start, end, budget = ("2025-06-01", "2025-08-31", 0.2) if quick else ("2023-01-01", "2025-08-31", 8.0)
    t = time.monotonic()
    result = train(
        settings,
        symbols,
        "15m",
        settings.data_dir / "klines_15m",
        start,
        end,
        budget,
        None,
        f"bench-{time.time_ns()}",
    )
    seconds = time.monotonic() - t
    overall = result.report.overall
    parameters = {
        "symbols": symbols,
        "start": start,
        "end": end,
        "budget_minutes": budget,
        "rows": result.info["rows"],
        "final_train_rows": result.info["final_train_rows"],
        "folds": len(result.report.folds),
    }
    results = {
        "seconds": seconds,
        "stages_s": result.timings,
        "tuning_trials": {m: s["trials"] for m, s in result.tuning.items()},
        "wf_auc": {m: overall[m]["roc_auc"] for m in overall},
        "wf_accuracy": {m: overall[m]["accuracy"] for m in overall},
    }
    return parameters, results
