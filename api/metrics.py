"""Prometheus metrics of the model server, on a registry of its own (one per app instance)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess, values

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


@dataclass(frozen=True)
class ApiMetrics:
    """Request latency, errors by kind, the model version served and reloads."""

    registry: CollectorRegistry
    latency: Histogram
    errors: Counter
    model_version: Gauge
    reloads: Counter
    ahead: Counter
    _labels: list[str] = field(default_factory=list)

    @staticmethod
    def multiprocess() -> bool:
        """True when the values live in PROMETHEUS_MULTIPROC_DIR's files (several workers, api.serve):
        prometheus_client chose its value store when it was first imported."""
        return values.ValueClass is not values.MutexValue

    def exposition_registry(self) -> CollectorRegistry:
        """What ``/metrics`` exposes: this worker's registry, or every worker's totals from the files."""
        if not self.multiprocess():
            return self.registry
        reg = CollectorRegistry()
        multiprocess.MultiProcessCollector(reg)  # type: ignore[no-untyped-call]
        return reg

    def set_model(self, model: Any) -> None:
        """Point the version gauge at the model serving now (dropping the previous model's series)."""
        for name in self._labels:
            self.model_version.remove(name)
        self._labels.clear()
        try:
            version = float(model.version)
        except (TypeError, ValueError):
            version = -1.0
        self.model_version.labels(model.name).set(version)
        self._labels.append(model.name)

    @classmethod
    def create(cls) -> ApiMetrics:
        """Build the metrics on a fresh registry."""
        reg = CollectorRegistry()
        return cls(
            registry=reg,
            latency=Histogram(
                "hft_api_request_seconds",
                "Request latency by route",
                ["route", "method"],
                buckets=LATENCY_BUCKETS,
                registry=reg,
            ),
            errors=Counter("hft_api_errors", "Error responses by kind", ["kind"], registry=reg),
            model_version=Gauge(
                "hft_api_model_version",
                "Registry version of the model serving now",
                ["model_name"],
                registry=reg,
                multiprocess_mode="mostrecent",
            ),
            reloads=Counter("hft_api_model_reloads", "Model swaps after the alias moved", registry=reg),
            ahead=Counter(
                "hft_api_predicted_ahead",
                "Closed bars scored when announced, before a request asked (outcome: scored and announced; moved: the row was a later bar's by then; failed)",
                ["outcome"],
                registry=reg,
            ),
        )
