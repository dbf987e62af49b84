"""The dashboard's pure parts: metric resolution, model tables, validation summaries, the app factory."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hft.config import Settings
from hft.reporting import models, prometheus, quality


def test_panel_picks_the_histogram_the_bot_defines() -> None:
    names = ["up", "trading_bot_tick_to_signal_seconds_bucket", "trading_bot_tick_to_signal_seconds_count"]
    panel = next(p for p in prometheus.PANELS if p.key == "tick_to_signal_p99")
    assert prometheus.panel_exprs(panel, names) == [
        (
            "trading_bot_tick_to_signal_seconds",
            "1000 * histogram_quantile(0.99, sum by (le) (rate(trading_bot_tick_to_signal_seconds_bucket[1m])))",
        )
    ]


def test_panel_queries_each_stage_counter_and_says_none_when_absent() -> None:
    throughput = next(p for p in prometheus.PANELS if p.key == "throughput")
    exprs = prometheus.panel_exprs(
        throughput,
        [
            "market_producer_ticks_out_total",
            "tick_ingestor_rows_written_total",
            "tick_ingestor_rows_written_created",
        ],
    )
    assert exprs == [
        ("market_producer_ticks_out_total", "sum by (job) (rate(market_producer_ticks_out_total[1m]))"),
        ("tick_ingestor_rows_written_total", "sum by (job) (rate(tick_ingestor_rows_written_total[1m]))"),
    ]
    assert prometheus.panel_exprs(throughput, ["up"]) == []


def test_prometheus_url_prefers_the_setting() -> None:
    assert prometheus.prometheus_url(Settings(port_base=30000)) == "http://127.0.0.1:30004"
    assert (
        prometheus.prometheus_url(Settings(prometheus_url="http://prometheus:9090"))
        == "http://prometheus:9090"
    )


def _version(alias: str, metrics: dict[str, float]) -> models.ModelVersionView:
    t = datetime(2026, 1, 1, tzinfo=UTC)
    return models.ModelVersionView(alias, "m", "3", "run", t, t, metrics, {}, {}, "", "")


def test_walk_forward_table_lists_models_then_baselines() -> None:
    v = _version(
        "challenger",
        {
            "wf.persistence.roc_auc": 0.51,
            "wf.ensemble.roc_auc": 0.55,
            "wf.lstm.accuracy": 0.52,
            "wf.ensemble.bt.sharpe": 1.5,
            "fold.lstm.roc_auc": 0.4,
            "wf.ensemble.n": 100,
        },
    )
    rows = models.walk_forward_table(v)
    assert [r["model"] for r in rows] == ["ensemble", "lstm", "persistence"]
    assert rows[0] == {"model": "ensemble", "kind": "model", "roc_auc": 0.55, "bt.sharpe": 1.5}
    assert rows[2]["kind"] == "baseline"


def test_gate_table_compares_champion_and_challenger() -> None:
    view = models.ModelsView(
        "m",
        {
            "champion": _version("champion", {"gate.roc_auc": 0.53}),
            "challenger": _version("challenger", {"gate.roc_auc": 0.55, "gate.window_start_ns": 1.0}),
        },
    )
    rows = models.metric_table(view)
    # first which window each version's numbers are from, then the metrics side by side
    assert rows[0] == {"metric": "window start (UTC)", "champion": None, "challenger": "1970-01-01 00:00"}
    assert rows[1]["metric"] == "window end (UTC)"
    assert rows[2:] == [{"metric": "roc_auc", "champion": 0.53, "challenger": 0.55}]


def test_notes_say_why_walk_forward_and_gate_net_pnl_differ() -> None:
    start = datetime(2025, 6, 1, tzinfo=UTC).timestamp() * 1e9
    end = datetime(2025, 8, 31, tzinfo=UTC).timestamp() * 1e9
    v = _version(
        "challenger",
        {
            "wf.ensemble.bt.net_pnl_after_fees": -7911.0,
            "wf.ensemble.bt.trades": 2006.0,
            "gate.net_pnl_after_fees": -4256.0,
            "gate.trades": 870.0,
            "gate.window_start_ns": start,
            "gate.window_end_ns": end,
        },
    )
    v = dataclasses.replace(v, folds=3)
    wf, gate = models.pnl_notes(v)
    assert "pooled (3 windows)" in wf
    assert "-7,911.0 over 2,006 trades" in wf
    assert "most recent test window" in gate
    assert "2025-06-01 00:00 → 2025-08-31 00:00 UTC" in gate
    assert "-4,256.0 over 870 trades" in gate


def test_public_mlflow_url_is_what_the_browser_can_reach() -> None:
    assert (
        models.public_mlflow_url(
            Settings(mlflow_tracking_uri="http://mlflow:5000", mlflow_public_url="http://127.0.0.1:5000/")
        )
        == "http://127.0.0.1:5000"
    )
    assert models.public_mlflow_url(Settings(port_base=30000)) == "http://127.0.0.1:30003"


def test_validation_summary_keeps_failures_and_relative_docs_pages(tmp_path: Path) -> None:
    s = Settings(home=tmp_path)
    docs = tmp_path / "data_docs" / "validations" / "ticks" / "run.html"
    row = {
        "kind": "ticks",
        "success": False,
        "rows": 10,
        "start": "2024-08-08T23:54:00+00:00",
        "end": "2024-08-09T00:06:00+00:00",
        "finished_at": "2026-11-24T15:00:00+00:00",
        "failed": ["trade ids unique"],
        "checks": [{"success": True}, {"success": False}],
        "pages": [docs.as_uri()],
        "summary": "ticks: FAILED",
    }
    res = quality.summarize(s, row)
    assert (res.kind, res.success, res.checks, res.passed) == ("ticks", False, 2, 1)
    assert res.failed == ["trade ids unique"]
    assert res.pages == ["validations/ticks/run.html"]


def test_latest_results_takes_the_newest_run_of_each_kind(tmp_path: Path) -> None:
    from hft.quality.validate import runs_file

    s = Settings(home=tmp_path)
    path = runs_file(s)
    path.parent.mkdir(parents=True)
    rows = [
        {"kind": "ticks", "success": False, "rows": 1},
        {"kind": "bars", "success": True, "rows": 2},
        {"kind": "ticks", "success": True, "rows": 3},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    got = {r.kind: (r.success, r.rows) for r in quality.latest_results(s)}
    assert got == {"bars": (True, 2), "ticks": (True, 3)}
    assert quality.data_docs_index(s) is None


class _LoggedIn:
    """A test client that sends the dashboard's login with every request."""

    def __init__(self, client, settings: Settings) -> None:  # type: ignore[no-untyped-def]
        import base64

        login = f"{settings.dashboard_user}:{settings.dashboard_password.get_secret_value()}"
        self.client = client
        self.headers = {"Authorization": "Basic " + base64.b64encode(login.encode()).decode()}

    def get(self, path: str):  # type: ignore[no-untyped-def]
        return self.client.get(path, headers=self.headers)

    def post(self, path: str, **kw):  # type: ignore[no-untyped-def]
        return self.client.post(path, headers=self.headers, **kw)


@pytest.fixture
def client(tmp_path: Path):  # type: ignore[no-untyped-def]
    from dashboard.app import create_app

    s = Settings(home=tmp_path, port_base=29990)  # nothing listens there: pages would show error boxes
    return _LoggedIn(create_app(s, clock=lambda: datetime(2026, 1, 1, tzinfo=UTC)).server.test_client(), s)


def test_app_serves_metrics_health_and_its_layout(client) -> None:  # type: ignore[no-untyped-def]
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert b"hft_dashboard_up 1.0" in metrics.data
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert client.get("/market").status_code == 200  # Dash serves the shell; pages render client-side
    assert client.get("/data-docs/index.html").status_code == 404  # none built yet
    deps = client.get("/_dash-dependencies").get_json()
    outputs = " ".join(d["output"] for d in deps)
    for element in ("trading-cards", "price-graph", "models-cards", "quality-table", "sys-targets"):
        assert element in outputs


def test_a_page_whose_data_source_is_down_shows_an_error_box(client) -> None:  # type: ignore[no-untyped-def]
    body = {
        "output": "..system-error.children...sys-targets.children...sys-load-box.children..."
        "sys-graphs.children...sys-missing.children..",
        "outputs": [
            {"id": i, "property": "children"}
            for i in ("system-error", "sys-targets", "sys-load-box", "sys-graphs", "sys-missing")
        ],
        "inputs": [
            {"id": "tick", "property": "n_intervals", "value": 1},
            {"id": "sys-window", "property": "value", "value": 15},
        ],
        "changedPropIds": ["tick.n_intervals"],
        "state": [],
    }
    resp = client.post("/_dash-update-component", json=body)
    assert resp.status_code == 200
    payload = resp.get_json()["response"]
    box = payload["system-error"]["children"]
    assert box["props"]["className"] == "error-box"
    assert "unreachable" in json.dumps(box)
    assert b'hft_dashboard_errors_total{page="system"}' in client.get("/metrics").data


def test_kill_switch_needs_the_api_key_and_sends_it() -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from hft.config import ConfigurationError
    from hft.reporting.trading import kill_switch

    seen: list[tuple[str, str | None, bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            seen.append((self.path, self.headers.get("X-API-Key"), body))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"state": "halted"}')

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        with pytest.raises(ConfigurationError):
            kill_switch(Settings(api_url=url), halt=True)
        assert kill_switch(Settings(api_url=url, api_key="k1"), halt=True) == {"state": "halted"}
        kill_switch(Settings(api_url=url, api_key="k1"), halt=False)
    finally:
        server.shutdown()
    assert [(p, k) for p, k, _ in seen] == [("/bot/halt", "k1"), ("/bot/resume", "k1")]
    assert json.loads(seen[0][2]) == {"reason": "dashboard"}
