"""Prometheus HTTP API client and the System page's queries.

Metric names follow the processes' own definitions; where a process family may name a series
slightly differently, the page asks Prometheus which names exist and picks the first that
matches, so the page shows what is there and says what is missing instead of failing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from hft.config import Settings, TransientError


def prometheus_url(settings: Settings) -> str:
    """Base URL of Prometheus: ``HFT_PROMETHEUS_URL`` or the embedded stack's."""
    return settings.prometheus_url or f"http://{settings.bind_host}:{settings.port('prometheus')}"


@dataclass(frozen=True)
class Series:
    """One time series of a range query."""

    labels: dict[str, str]
    times: list[datetime]
    values: list[float]


@dataclass(frozen=True)
class Target:
    """One scrape target and its health."""

    job: str
    url: str
    health: str  # "up", "down" or "unknown"
    last_error: str = ""
    last_scrape: str = ""


class PrometheusClient:
    """Minimal client of Prometheus' HTTP API (instant and range queries, targets, names)."""

    def __init__(self, base_url: str, timeout: float = 3.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def _get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        try:
            resp = httpx.get(f"{self.base_url}{path}", params=params, timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise TransientError(f"Prometheus at {self.base_url} unreachable: {exc}") from exc
        if resp.status_code >= 400:
            raise TransientError(f"Prometheus {path} answered {resp.status_code}: {resp.text[:200]}")
        body = resp.json()
        if body.get("status") != "success":
            raise TransientError(f"Prometheus {path}: {body.get('error', body)}")
        return body["data"]

    def query(self, expr: str, at: datetime | None = None) -> list[tuple[dict[str, str], float]]:
        """Evaluate an instant query: (labels, value) per series."""
        params: dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = at.timestamp()
        data = self._get("/api/v1/query", params)
        if data.get("resultType") == "scalar":
            return [({}, float(data["result"][1]))]
        return [(r["metric"], float(r["value"][1])) for r in data["result"]]

    def query_range(self, expr: str, start: datetime, end: datetime, step_s: float) -> list[Series]:
        """Evaluate a range query between ``start`` and ``end``."""
        data = self._get(
            "/api/v1/query_range",
            {"query": expr, "start": start.timestamp(), "end": end.timestamp(), "step": step_s},
        )
        return [
            Series(
                r["metric"],
                [datetime.fromtimestamp(float(t), UTC) for t, _ in r["values"]],
                [float(v) for _, v in r["values"]],
            )
            for r in data["result"]
        ]

    def targets(self) -> list[Target]:
        """Active scrape targets with their health."""
        data = self._get("/api/v1/targets", {"state": "active"})
        return sorted(
            (
                Target(
                    t["labels"].get("job", "?"),
                    t.get("scrapeUrl", ""),
                    t.get("health", "unknown"),
                    t.get("lastError", ""),
                    t.get("lastScrape", ""),
                )
                for t in data["activeTargets"]
            ),
            key=lambda t: t.job,
        )

    def metric_names(self) -> list[str]:
        """Every metric name Prometheus holds."""
        return list(self._get("/api/v1/label/__name__/values"))

    def ready(self) -> bool:
        """Whether Prometheus answers its readiness endpoint."""
        try:
            return httpx.get(f"{self.base_url}/-/ready", timeout=self.timeout).status_code == 200
        except httpx.HTTPError:
            return False


@dataclass(frozen=True)
class Panel:
    """A System page chart: which series it wants and the PromQL template for the name found."""

    key: str
    title: str
    unit: str
    patterns: Sequence[str]  # regexes over metric names, tried in order
    template: str  # PromQL with {metric} (for histograms: the name without _bucket)
    histogram: bool = False
    notes: str = ""


# The names the processes define (streamers/, api/, workers/) come first; looser patterns after.
PANELS: tuple[Panel, ...] = (
    Panel(
        "tick_to_signal_p50",
        "Tick-to-signal latency p50",
        "ms",
        (r"^trading_bot_tick_to_signal_seconds_bucket$", r"tick_to_signal.*_bucket$"),
        "1000 * histogram_quantile(0.5, sum by (le) (rate({metric}_bucket[1m])))",
        histogram=True,
    ),
    Panel(
        "tick_to_signal_p99",
        "Tick-to-signal latency p99",
        "ms",
        (r"^trading_bot_tick_to_signal_seconds_bucket$", r"tick_to_signal.*_bucket$"),
        "1000 * histogram_quantile(0.99, sum by (le) (rate({metric}_bucket[1m])))",
        histogram=True,
    ),
    Panel(
        "tick_to_feature_p99",
        "Tick-to-feature latency p99",
        "ms",
        (r"^feature_calculator_tick_to_feature_seconds_bucket$", r"tick_to_feature.*_bucket$"),
        "1000 * histogram_quantile(0.99, sum by (le) (rate({metric}_bucket[1m])))",
        histogram=True,
    ),
    Panel(
        "api_latency_p99",
        "API request latency p99",
        "ms",
        (r"^hft_api_request_seconds_bucket$",),
        "1000 * histogram_quantile(0.99, sum by (le) (rate({metric}_bucket[1m])))",
        histogram=True,
    ),
    Panel(
        "throughput",
        "Ticks per second by stage",
        "1/s",
        (
            r"^(exchange_trades_published|market_producer_ticks_out|tick_ingestor_rows_written|"
            r"feature_calculator_ticks)_total$",
        ),
        "sum by (job) (rate({metric}[1m]))",
    ),
    Panel(
        "lag",
        "Consumer lag",
        "messages",
        (
            r"^(tick_ingestor|feature_calculator)_consumer_lag$",
            r"consumer_?lag",
            r"^kafka_consumergroup_lag$",
        ),
        "sum by (job) ({metric})",
    ),
    Panel(
        "errors",
        "Errors and dead letters per second",
        "1/s",
        (
            r"^(market_producer_dead_lettered|market_producer_send_errors|tick_ingestor_dead_lettered|"
            r"tick_ingestor_commit_failures|hft_api_errors|trading_bot_predict_errors|hft_dashboard_errors)_total$",
        ),
        "sum by (job) (rate({metric}[1m]))",
    ),
    Panel(
        "orders",
        "Order outcomes per second",
        "1/s",
        (r"^hft_worker_orders_total$",),
        "sum by (outcome) (rate({metric}[1m]))",
    ),
    Panel(
        "memory",
        "Resident memory by process",
        "MiB",
        (r"^process_resident_memory_bytes$",),
        "{metric} / 1048576",
    ),
    Panel("cpu", "CPU by process", "cores", (r"^process_cpu_seconds_total$",), "rate({metric}[1m])"),
)


def resolve_metric(names: Sequence[str], patterns: Sequence[str]) -> list[str]:
    """Names matching the first pattern that matches any (all of them, sorted), else []."""
    for pat in patterns:
        rx = re.compile(pat)
        hits = sorted(n for n in names if rx.search(n))
        if hits:
            return hits
    return []


def panel_exprs(panel: Panel, names: Sequence[str]) -> list[tuple[str, str]]:
    """(metric name, PromQL) per series family of a panel; [] when Prometheus holds none of them.

    Several counters of one family (one per stage) are queried one by one: ``rate()`` drops the
    name, so a single selector over all of them would collide on identical label sets.
    """
    hits = resolve_metric(names, panel.patterns)
    if not hits:
        return []
    if panel.histogram:
        base = hits[0].removesuffix("_bucket")
        return [(base, panel.template.format(metric=base))]
    return [(h, panel.template.format(metric=h)) for h in hits]


# what "load" means on the System page: ticks per second through the pipeline, first found wins
LOAD_COUNTERS = (
    "feature_calculator_ticks_total",
    "market_producer_ticks_out_total",
    "tick_ingestor_rows_written_total",
    "exchange_trades_published_total",
)
LATENCY_COUNTS = {
    "tick_to_signal": "trading_bot_tick_to_signal_seconds_count",
    "tick_to_feature": "feature_calculator_tick_to_feature_seconds_count",
    "api": "hft_api_request_seconds_count",
}


@dataclass(frozen=True)
class Load:
    """The load the System page's latencies were measured under, over its window."""

    seconds: float  # the window
    counter: str | None  # the tick counter the rates come from; None when no process reports one
    avg_ticks_per_s: float | None
    peak_ticks_per_s: float | None
    cpu_cores: float | None  # CPU used by the scraped processes together, average over the window
    samples: dict[str, float] = field(default_factory=dict)  # latency histogram -> observations


def finite(values: Sequence[float]) -> list[float]:
    """The finite values (Prometheus answers NaN for a quantile of no observations)."""
    return [v for v in values if math.isfinite(v)]


def _scalar(client: PrometheusClient, expr: str, at: datetime) -> float | None:
    got = [v for _, v in client.query(expr, at) if math.isfinite(v)]
    return sum(got) if got else None


def load_during(
    client: PrometheusClient, names: Sequence[str], start: datetime, end: datetime, step_s: float
) -> Load:
    """Ticks/s (average and peak), CPU and latency sample counts between ``start`` and ``end``."""
    window = max(1.0, (end - start).total_seconds())
    rng = f"[{int(window)}s]"
    counter = next((c for c in LOAD_COUNTERS if c in names), None)
    avg = peak = None
    if counter:
        total = _scalar(client, f"sum(increase({counter}{rng}))", end)
        avg = None if total is None else total / window
        peaks = [
            v
            for s in client.query_range(f"sum(rate({counter}[1m]))", start, end, step_s)
            for v in finite(s.values)
        ]
        peak = max(peaks) if peaks else None
    cpu = (
        _scalar(client, f"sum(rate(process_cpu_seconds_total{rng}))", end)
        if "process_cpu_seconds_total" in names
        else None
    )
    samples: dict[str, float] = {}
    for key, metric in LATENCY_COUNTS.items():
        if metric in names:
            n = _scalar(client, f"sum(increase({metric}{rng}))", end)
            if n is not None:
                samples[key] = n
    return Load(window, counter, avg, peak, cpu, samples)


def y_range(series: Sequence[Series]) -> tuple[float, float] | None:
    """A y-axis range that holds every finite value of the series (from 0 for non-negative data)."""
    values = [v for s in series for v in finite(s.values)]
    if not values:
        return None
    lo, hi = min(values), max(values)
    lo = min(lo, 0.0)
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    pad = 0.08 * (hi - lo)
    return (lo - pad if lo < 0 else lo), hi + pad


@dataclass
class SystemView:
    """What the System page shows."""

    targets: list[Target]
    series: dict[str, list[Series]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)  # panel titles with no metric yet
    load: Load | None = None  # what the latencies were measured under


def system_view(client: PrometheusClient, start: datetime, end: datetime, step_s: float = 15.0) -> SystemView:
    """Targets' health and the series of every panel over ``[start, end]``."""
    targets = client.targets()
    names = client.metric_names()
    view = SystemView(targets)
    for panel in PANELS:
        exprs = panel_exprs(panel, names)
        if not exprs:
            view.missing.append(panel.title)
            continue
        series: list[Series] = []
        for name, expr in exprs:
            for s in client.query_range(expr, start, end, step_s):
                labels = {**s.labels, "metric": name} if len(exprs) > 1 else s.labels
                series.append(Series(labels, s.times, s.values))
        view.series[panel.key] = series
    view.load = load_during(client, names, start, end, step_s)
    return view
