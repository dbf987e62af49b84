"""Shared helpers for benchmarks: machine facts and the JSON result file."""

from __future__ import annotations

import json
import os
import platform
import statistics
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
VERSIONS = [
    "kafka-python",
    "confluent-kafka",
    "psycopg",
    "redis",
    "feast",
    "lightgbm",
    "xgboost-cpu",
    "torch",
    "scikit-learn",
    "fastapi",
    "uvicorn",
    "mlflow",
    "numpy",
]


def machine() -> dict[str, Any]:
    """Cores, memory, Python and library versions of this machine."""
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    versions = {}
    for pkg in VERSIONS:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
    }


def percentiles(values: list[float]) -> dict[str, float]:
    """p50/p95/p99 (and mean, max) of a sample."""
    if not values:
        return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan")}
    s = sorted(values)

    def q(p: float) -> float:
        return s[min(len(s) - 1, round(p * (len(s) - 1)))]

    return {
        "p50": q(0.50),
        "p95": q(0.95),
        "p99": q(0.99),
        "mean": statistics.fmean(s),
        "max": s[-1],
        "n": len(s),
    }


def write_result(name: str, parameters: dict[str, Any], results: dict[str, Any]) -> Path:
    """Write bench/results/<name>.json; results' keys sit at top level for stable lookup."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    doc = {
        "name": name,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "parameters": parameters,
        **results,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(doc, indent=2, default=float) + "\n")
    return path
