"""What watches the stack, without the stack: the OTLP → Prometheus bridge fed by the OpenTelemetry
SDK's own OTLP exporter (the one Airflow uses), the generated prometheus.yml, the exporters'
secrets kept off their command lines, and the Grafana dashboard of the stack services."""

from __future__ import annotations

import gzip
import json
import re
import shutil
import socket
import stat
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from hft.config import REPO_ROOT, Settings
from hft.devstack.airflow import airflow_env
from hft.devstack.exporters import AirflowMetrics, PostgresExporter, RedisExporter
from hft.devstack.otlp_bridge import parse_request, serve
from hft.devstack.prometheus import Prometheus

DEPLOY = REPO_ROOT / "deploy"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def bridge() -> Iterator[str]:
    """The bridge serving on a free port in this process; yields its base URL."""
    port = _free_port()
    stop = threading.Event()
    thread = threading.Thread(target=serve, args=("127.0.0.1", port, stop), daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(f"{url}/-/healthy", timeout=0.5).close()
            break
        except OSError:
            threading.Event().wait(0.05)
    yield url
    stop.set()
    thread.join(5)


def _scrape(url: str) -> dict[str, float]:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def _provider(url: str, temporality: str) -> object:
    """A MeterProvider exporting to the bridge with the OTLP/HTTP exporter, as Airflow's does."""
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider, UpDownCounter
    from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader

    kind = AggregationTemporality.DELTA if temporality == "delta" else AggregationTemporality.CUMULATIVE
    exporter = OTLPMetricExporter(
        endpoint=f"{url}/v1/metrics",
        preferred_temporality={Counter: kind, Histogram: kind, UpDownCounter: kind},
    )
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    return MeterProvider(metric_readers=[reader])


@pytest.mark.parametrize("temporality", ["delta", "cumulative"])
def test_the_bridge_serves_otlp_metrics_in_prometheus_format(bridge: str, temporality: str) -> None:
    # two processes of one component (a task run, then another): their counts add up
    for run in range(2):
        provider = _provider(bridge, temporality)
        meter = provider.get_meter("airflow")  # type: ignore[attr-defined]
        counter = meter.create_counter("airflow.ti.finish")
        counter.add(2, {"dag_id": "validate_market_data", "state": "success"})
        counter.add(1, {"dag_id": "validate_market_data", "state": "failed"})
        meter.create_up_down_counter("airflow.executor.running_tasks").add(3 if run == 0 else -1)
        meter.create_gauge("airflow.dagbag_size").set(4 + run)
        hist = meter.create_histogram("airflow.dag_processing.last_duration", unit="ms")
        for v in (10.0, 30.0):
            hist.record(v, {"file_name": "validate.py"})
        assert provider.force_flush(10_000)  # type: ignore[attr-defined]
        if temporality == "delta":  # a second export of the same process: the deltas since the first
            counter.add(5, {"dag_id": "validate_market_data", "state": "success"})
            assert provider.force_flush(10_000)  # type: ignore[attr-defined]
        provider.shutdown()  # type: ignore[attr-defined]
    got = _scrape(bridge)
    per_run_success = 7 if temporality == "delta" else 2
    assert (
        got['airflow_ti_finish_total{dag_id="validate_market_data",state="success"}'] == 2 * per_run_success
    )
    assert got['airflow_ti_finish_total{dag_id="validate_market_data",state="failed"}'] == 2
    assert got["airflow_executor_running_tasks"] == 2  # up-down counter: +3 in one process, -1 in another
    assert got["airflow_dagbag_size"] == 5  # a gauge: the latest value
    assert got['airflow_dag_processing_last_duration_count{file_name="validate.py"}'] == 4
    assert got['airflow_dag_processing_last_duration_sum{file_name="validate.py"}'] == 80
    assert got['otlp_bridge_requests_total{result="ok"}'] >= 2
    assert got['otlp_bridge_requests_total{result="bad"}'] == 0


def test_the_bridge_answers_400_to_what_is_not_otlp_and_takes_gzip_and_json(bridge: str) -> None:
    request = urllib.request.Request(
        f"{bridge}/v1/metrics", data=b"\xff\x00garbage", headers={"Content-Type": "application/x-protobuf"}
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=5)
    assert err.value.code == 400
    body = {
        "resourceMetrics": [
            {
                "scopeMetrics": [
                    {
                        "metrics": [
                            {
                                "name": "airflow.scheduler_heartbeat",
                                "sum": {
                                    "aggregationTemporality": 1,
                                    "isMonotonic": True,
                                    "dataPoints": [{"asInt": "3", "startTimeUnixNano": "1"}],
                                },
                            }
                        ]
                    }
                ]
            }
        ]
    }
    raw = gzip.compress(json.dumps(body).encode())
    request = urllib.request.Request(
        f"{bridge}/v1/metrics",
        data=raw,
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    urllib.request.urlopen(request, timeout=5).close()
    got = _scrape(bridge)
    assert got["airflow_scheduler_heartbeat_total"] == 3
    assert got['otlp_bridge_requests_total{result="bad"}'] == 1
    with pytest.raises(ValueError, match="not an OTLP"):
        parse_request(b"{", "application/json", "")


def test_label_values_are_escaped(bridge: str) -> None:
    provider = _provider(bridge, "delta")
    meter = provider.get_meter("t")  # type: ignore[attr-defined]
    meter.create_counter("odd.name-with.dashes").add(1, {"path": 'a"b\\c\nd', "9lives": True})
    assert provider.force_flush(10_000)  # type: ignore[attr-defined]
    provider.shutdown()  # type: ignore[attr-defined]
    with urllib.request.urlopen(f"{bridge}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    assert 'odd_name_with_dashes_total{_9lives="true",path="a\\"b\\\\c\\nd"} 1' in text


# ---- the generated prometheus.yml and the exporters' secrets ------------------------------------
def test_generated_prometheus_config_scrapes_every_exporter_and_keeps_secrets_out(tmp_path: Path) -> None:
    s = Settings(home=tmp_path, port_base=31000)
    prom = Prometheus(s)
    text = prom.config_text()
    cfg = yaml.safe_load(text)
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    targets = {name: j["static_configs"][0]["targets"] for name, j in jobs.items()}
    assert targets["kafka"] == ["127.0.0.1:31026"]  # the broker's JMX exporter agent
    assert targets["airflow-metrics"] == ["127.0.0.1:31032"]
    assert targets["mlflow"] == ["127.0.0.1:31003"]
    assert targets["prometheus"] == ["127.0.0.1:31004"]
    for exporter in (PostgresExporter(s), RedisExporter(s)):
        if exporter.available():
            assert targets[exporter.name] == [f"127.0.0.1:{exporter.port}"]
        else:
            assert exporter.name not in targets
    mlflow_pw = s.mlflow_password.get_secret_value() if hasattr(s, "mlflow_password") else ""
    if mlflow_pw:
        auth = jobs["mlflow"]["basic_auth"]
        assert auth["username"] == s.mlflow_username
        pw_file = Path(auth["password_file"])
        assert pw_file.read_text() == mlflow_pw
        assert stat.S_IMODE(pw_file.stat().st_mode) == 0o600
        assert mlflow_pw not in text
    for secret in (s.postgres_password, s.redis_password, s.supervisor_password):
        assert secret.get_secret_value() not in text
    promtool = shutil.which("promtool")
    if promtool:
        path = prom.write_config()
        proc = subprocess.run([promtool, "check", "config", str(path)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_exporters_take_their_passwords_off_the_command_line(tmp_path: Path) -> None:
    s = Settings(home=tmp_path, port_base=31000)
    pg_pw = s.postgres_password.get_secret_value()
    redis_pw = s.redis_password.get_secret_value()
    assert pg_pw
    assert redis_pw
    pg = PostgresExporter(s)
    assert not any(pg_pw in a for a in pg.command())
    assert "--web.listen-address=127.0.0.1:31030" in pg.command()
    env = pg.env()
    assert env["DATA_SOURCE_URI"] == "127.0.0.1:31000/postgres?sslmode=disable"
    assert env["DATA_SOURCE_USER"] == "postgres"
    assert pg_pw not in json.dumps(env)
    pw_file = Path(env["DATA_SOURCE_PASS_FILE"])
    assert pw_file.read_text() == pg_pw
    assert stat.S_IMODE(pw_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(pw_file.parent.stat().st_mode) == 0o700
    redis = RedisExporter(s)
    assert not any(redis_pw in a for a in redis.command())
    assert "-redis.addr=redis://127.0.0.1:31001" in redis.command()
    assert "-web.listen-address=127.0.0.1:31031" in redis.command()
    assert redis.env() == {"REDIS_PASSWORD": redis_pw}
    bridge = AirflowMetrics(s)
    assert bridge.command()[1:] == [
        "-m",
        "hft.devstack.otlp_bridge",
        "--host",
        "127.0.0.1",
        "--port",
        "31032",
    ]
    assert not AirflowMetrics(Settings(home=tmp_path, airflow_enabled=False)).available()


def test_airflow_sends_its_metrics_to_the_bridge(tmp_path: Path) -> None:
    s = Settings(home=tmp_path, port_base=31000)
    env = airflow_env(s, base={"PATH": "/usr/bin"})
    assert env["AIRFLOW__METRICS__OTEL_ON"] == "True"
    assert env["OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"] == "http://127.0.0.1:31032/v1/metrics"
    assert env["OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"] == "http/protobuf"
    assert env["OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE"] == "delta"
    assert "AIRFLOW__METRICS__STATSD_ON" not in env


# ---- Grafana: the stack services' dashboard ------------------------------------------------------
SERVICES_BOARD = DEPLOY / "grafana" / "dashboards" / "hft-services.json"


def _exprs(board: Path) -> list[str]:
    out = []
    for panel in json.loads(board.read_text())["panels"]:
        for target in panel.get("targets", []):
            out.append(target["expr"])
    return out


def test_the_services_dashboard_shows_every_exporter() -> None:
    doc = json.loads(SERVICES_BOARD.read_text())
    assert doc["uid"] == "hft-services"
    exprs = " ".join(_exprs(SERVICES_BOARD))
    for prefix in ("pg_", "redis_", "kafka_server_", "airflow_", "mlflow_http_request"):
        assert re.search(rf"\b{prefix}", exprs), f"no panel reads {prefix}* metrics"
    for panel in doc["panels"]:
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "prometheus"
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
