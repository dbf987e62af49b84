"""A small OTLP/HTTP → Prometheus bridge: Airflow's metrics in Prometheus without a collector.

Airflow 3 emits its metrics through StatsD or OpenTelemetry. StatsD needs the ``statsd`` client
package and a StatsD exporter (neither is in the lock or in Debian bookworm); OpenTelemetry's OTLP
exporter ships with Airflow itself. So Airflow pushes OTLP (``[metrics] otel_on``, see
:func:`hft.devstack.airflow.airflow_env`) to this process, which keeps the latest state of every
series and serves it in Prometheus' text format:

- ``POST /v1/metrics``: an ``ExportMetricsServiceRequest`` (protobuf, or JSON; gzip allowed);
- ``GET /metrics``: everything received, plus ``otlp_bridge_*`` about the bridge itself;
- ``GET /-/healthy``: 200 while it runs.

Conversion: names lose everything but ``[a-zA-Z0-9_:]`` (``airflow.scheduler_heartbeat`` →
``airflow_scheduler_heartbeat``); a monotonic sum is a counter with ``_total``; a non-monotonic sum
and a gauge are gauges; a histogram (explicit or exponential) or summary becomes a summary with
``_count`` and ``_sum`` only (Airflow's timers use exponential buckets, which Prometheus 2.42 cannot
read). Data point attributes become labels. Delta points are added up; cumulative points are kept
per stream (its start time: each Airflow process, a task run included, is one stream) and summed,
so counts from processes that have exited stay in the totals.

Run: ``python -m hft.devstack.otlp_bridge --host 127.0.0.1 --port P`` (the stack's
``airflow-metrics`` service). State lives in memory: a restart starts the counters at zero, which
Prometheus' ``rate()`` reads as a counter reset.
"""

from __future__ import annotations

import argparse
import gzip
import logging
import re
import signal
import threading
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)

log = logging.getLogger("otlp_bridge")

DELTA = 1  # AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
MAX_STREAMS = 512  # cumulative streams kept per series before the oldest are folded into its base
MAX_BODY = 32 * 1024 * 1024

Labels = tuple[tuple[str, str], ...]


def metric_name(name: str) -> str:
    """A Prometheus metric name for an OpenTelemetry one."""
    out = re.sub(r"[^a-zA-Z0-9_:]", "_", name)
    return f"_{out}" if out[:1].isdigit() else out


def label_name(name: str) -> str:
    """A Prometheus label name for an attribute key."""
    out = re.sub(r"[^a-zA-Z0-9_]", "_", name)
    return f"_{out}" if out[:1].isdigit() or out.startswith("__") else out


def _any_value(v: Any) -> str:
    kind = v.WhichOneof("value")
    if kind is None:
        return ""
    if kind == "bool_value":
        return "true" if v.bool_value else "false"
    if kind in ("array_value", "kvlist_value"):
        return str(json_format.MessageToJson(getattr(v, kind), indent=None))
    if kind == "bytes_value":
        return bytes(v.bytes_value).hex()
    return str(getattr(v, kind))


def _labels(attributes: Any) -> Labels:
    return tuple(sorted((label_name(a.key), _any_value(a.value)) for a in attributes))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


@dataclass
class Series:
    """One series: deltas and retired streams add up in ``base``; live cumulative streams by start."""

    base: float = 0.0
    streams: dict[int, float] = field(default_factory=dict)
    last: float | None = None  # gauges: the latest value

    def add(self, delta: float) -> None:
        self.base += delta

    def cumulative(self, start: int, value: float) -> None:
        self.streams.pop(start, None)
        self.streams[start] = value  # insertion order: the most recently updated stream last
        while len(self.streams) > MAX_STREAMS:
            oldest = next(iter(self.streams))
            self.base += self.streams.pop(oldest)

    def set(self, value: float) -> None:
        self.last = value

    @property
    def value(self) -> float:
        return self.last if self.last is not None else self.base + sum(self.streams.values())


@dataclass
class Family:
    kind: str  # counter, gauge, summary
    help: str = ""
    series: dict[tuple[str, Labels], Series] = field(default_factory=dict)  # (suffix, labels)

    def get(self, suffix: str, labels: Labels) -> Series:
        return self.series.setdefault((suffix, labels), Series())


class Store:
    """Every series received, by Prometheus family name."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.families: dict[str, Family] = {}
        self.requests = {"ok": 0, "bad": 0}
        self.points = 0

    def _family(self, name: str, kind: str, help_text: str) -> Family:
        fam = self.families.get(name)
        if fam is None or fam.kind != kind:  # a name whose kind changed starts over
            fam = self.families[name] = Family(kind, help_text)
        return fam

    def _fold(self, series: Series, temporality: int, start: int, value: float) -> None:
        if temporality == DELTA:
            series.add(value)
        else:
            series.cumulative(start, value)

    def ingest(self, request: ExportMetricsServiceRequest) -> int:
        """Fold one export request in; return the number of data points."""
        n = 0
        with self.lock:
            for rm in request.resource_metrics:
                for sm in rm.scope_metrics:
                    for m in sm.metrics:
                        n += self._metric(m)
            self.points += n
        return n

    def _metric(self, m: Any) -> int:
        name = metric_name(m.name)
        help_text = m.description
        kind = m.WhichOneof("data")
        if kind == "gauge":
            fam = self._family(name, "gauge", help_text)
            for dp in m.gauge.data_points:
                fam.get("", _labels(dp.attributes)).set(_point_value(dp))
            return len(m.gauge.data_points)
        if kind == "sum":
            monotonic = m.sum.is_monotonic
            if monotonic and not name.endswith("_total"):
                name += "_total"
            fam = self._family(name, "counter" if monotonic else "gauge", help_text)
            for dp in m.sum.data_points:
                series = fam.get("", _labels(dp.attributes))
                self._fold(series, m.sum.aggregation_temporality, dp.start_time_unix_nano, _point_value(dp))
            return len(m.sum.data_points)
        if kind in ("histogram", "exponential_histogram", "summary"):
            data = getattr(m, kind)
            # a summary's points are cumulative by definition
            temporality = getattr(data, "aggregation_temporality", 2)
            fam = self._family(name, "summary", help_text)
            for dp in data.data_points:
                labels = _labels(dp.attributes)
                self._fold(fam.get("_count", labels), temporality, dp.start_time_unix_nano, float(dp.count))
                self._fold(fam.get("_sum", labels), temporality, dp.start_time_unix_nano, float(dp.sum))
            return len(data.data_points)
        return 0

    def render(self) -> str:
        """Everything in Prometheus' text exposition format (0.0.4)."""
        lines: list[str] = []
        with self.lock:
            for name in sorted(self.families):
                fam = self.families[name]
                if fam.help:
                    lines.append(
                        f"# HELP {name} {fam.help.replace(chr(92), chr(92) * 2).replace(chr(10), ' ')}"
                    )
                lines.append(f"# TYPE {name} {fam.kind}")
                for (suffix, labels), series in sorted(fam.series.items()):
                    lbl = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
                    lines.append(
                        f"{name}{suffix}{{{lbl}}} {_number(series.value)}"
                        if lbl
                        else f"{name}{suffix} {_number(series.value)}"
                    )
            lines += [
                "# HELP otlp_bridge_requests_total OTLP export requests received, by result",
                "# TYPE otlp_bridge_requests_total counter",
                *(
                    f'otlp_bridge_requests_total{{result="{k}"}} {v}'
                    for k, v in sorted(self.requests.items())
                ),
                "# HELP otlp_bridge_points_total Data points folded in",
                "# TYPE otlp_bridge_points_total counter",
                f"otlp_bridge_points_total {self.points}",
                "# HELP otlp_bridge_series Series served",
                "# TYPE otlp_bridge_series gauge",
                f"otlp_bridge_series {sum(len(f.series) for f in self.families.values())}",
            ]
        return "\n".join(lines) + "\n"


def _point_value(dp: Any) -> float:
    kind = dp.WhichOneof("value")
    return float(getattr(dp, kind)) if kind else 0.0


def parse_request(body: bytes, content_type: str, encoding: str) -> ExportMetricsServiceRequest:
    """An OTLP/HTTP metrics request body (protobuf or JSON, gzip or deflate); ValueError if not one."""
    try:
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
    except (OSError, zlib.error, EOFError) as exc:
        raise ValueError(f"cannot decompress the {encoding} body: {exc}") from exc
    request = ExportMetricsServiceRequest()
    try:
        if content_type.split(";")[0].strip() == "application/json":
            json_format.Parse(body.decode("utf-8"), request)
        else:
            request.ParseFromString(body)
    except (DecodeError, json_format.ParseError, UnicodeDecodeError) as exc:
        raise ValueError(f"not an OTLP metrics export request: {exc}") from exc
    return request


def make_handler(store: Store) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "otlp-bridge"

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s " + format, self.address_string(), *args)

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            if path == "/metrics":
                self._send(200, store.render().encode(), "text/plain; version=0.0.4; charset=utf-8")
            elif path == "/-/healthy":
                self._send(200, b"ok\n", "text/plain")
            else:
                self._send(404, b"not found: GET /metrics, /-/healthy; POST /v1/metrics\n", "text/plain")

        def do_POST(self) -> None:
            if self.path.split("?")[0] != "/v1/metrics":
                self._send(404, b"only /v1/metrics (OTLP/HTTP metrics)\n", "text/plain")
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self._send(413, b"body too large\n", "text/plain")
                return
            body = self.rfile.read(length)
            content_type = self.headers.get("Content-Type", "application/x-protobuf")
            try:
                request = parse_request(body, content_type, self.headers.get("Content-Encoding", ""))
            except ValueError as exc:
                with store.lock:
                    store.requests["bad"] += 1
                self._send(400, f"{exc}\n".encode(), "text/plain")
                return
            store.ingest(request)
            with store.lock:
                store.requests["ok"] += 1
            if content_type.startswith("application/json"):
                self._send(200, b"{}", "application/json")
            else:
                self._send(200, ExportMetricsServiceResponse().SerializeToString(), "application/x-protobuf")

    return Handler


def serve(host: str, port: int, stop: threading.Event | None = None) -> None:
    """Serve until ``stop`` is set (or SIGTERM/SIGINT when run as a program)."""
    store = Store()
    server = ThreadingHTTPServer((host, port), make_handler(store))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="otlp-bridge", daemon=True)
    thread.start()
    log.info("OTLP metrics in on http://%s:%d/v1/metrics, Prometheus out on /metrics", host, port)
    stop = stop or threading.Event()
    try:
        stop.wait()
    finally:
        server.shutdown()
        server.server_close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    serve(args.host, args.port, stop)


if __name__ == "__main__":
    main()
