"""Every dashboard page, opened by headless Chromium on the replayed stack, shows data.

Screenshots land in tests/artifacts/dashboard/ (git-ignored). With HFT_UPDATE_SCREENSHOT=1
the Trading page's screenshot also replaces docs/screenshot.png (the README's picture).
"""

from __future__ import annotations

import os
import re
import shutil
from typing import Any

import httpx
import pytest

from hft.config import REPO_ROOT
from tests.e2e.dashboard import browser

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(browser.chromium() is None, reason="needs chromium")]

NUMBER = re.compile(r"-?[\d,]+(\.\d+)?")


def _page(world: dict[str, Any], path: str, name: str) -> browser.Node:
    url = world["url"] + path
    html = browser.capture(url, world["artifacts"] / f"{name}.png")
    (world["artifacts"] / f"{name}.html").write_text(html)
    dom = browser.parse(html)
    errors = dom.by_class("error-box")
    assert not errors, f"{name}: error boxes: {[e.all_text() for e in errors]}"
    return dom


def _kpi(dom: browser.Node, key: str) -> str:
    node = dom.find(f"kpi-{key}")
    assert node is not None, f"kpi-{key} missing"
    return node.by_class("value")[0].all_text() if node.by_class("value") else node.all_text()


def _graph(dom: browser.Node, graph_id: str, min_traces: int = 1) -> list[browser.Node]:
    graph = dom.find(graph_id)
    assert graph is not None, f"{graph_id} missing"
    traces = browser.plotted_traces(graph)
    assert len(traces) >= min_traces, f"{graph_id}: {len(traces)} drawn traces, want {min_traces}"
    return traces


def _rows(dom: browser.Node, table_id: str) -> int:
    table = dom.find(table_id)
    assert table is not None, f"{table_id} missing"
    return browser.table_rows(table)


def test_prometheus_reports_every_started_process_up(dashboard_world: dict[str, Any]) -> None:
    from hft.devstack.host import wait_for
    from hft.reporting.prometheus import PrometheusClient, prometheus_url

    s = dashboard_world["settings"]
    client = PrometheusClient(prometheus_url(s))
    if not client.ready():
        pytest.skip("Prometheus not installed (apt-get install prometheus)")
    jobs = set(dashboard_world["jobs"])

    def all_up() -> bool:
        health = {t.job: t.health for t in client.targets()}
        return all(health.get(j) == "up" for j in jobs)

    try:
        wait_for(all_up, "Prometheus targets", 30, 1.0)
    except TimeoutError:
        health = {t.job: (t.health, t.last_error) for t in client.targets()}
        pytest.fail(f"targets not up: { {j: health.get(j) for j in jobs} }")
    up = client.query('up{job="dashboard"}')
    assert up
    assert up[0][1] == 1.0


def test_trading_page_shows_equity_pnl_and_fills(dashboard_world: dict[str, Any]) -> None:
    dom = _page(dashboard_world, "/", "trading")
    fills = int(_kpi(dom, "fills"))
    assert fills >= 2
    assert NUMBER.fullmatch(_kpi(dom, "equity"))
    assert _kpi(dom, "win-rate").endswith("%")
    assert _kpi(dom, "fees") not in ("-", "0.00")
    _graph(dom, "equity-graph")
    assert _rows(dom, "orders-table") >= 2
    assert _rows(dom, "fills-table") >= 2
    assert _rows(dom, "positions-table") >= 1
    assert dom.find("bot-state-badge") is not None
    if os.environ.get("HFT_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(dashboard_world["artifacts"] / "trading.png", REPO_ROOT / "docs" / "screenshot.png")


def test_market_page_overlays_signals_and_fills_on_price(dashboard_world: dict[str, Any]) -> None:
    dom = _page(dashboard_world, "/market", "market")
    _graph(dom, "price-graph", min_traces=3)  # trades, at least one signal side, fills
    note = dom.find("price-note").all_text()
    m = re.search(r"(\d+) signals, (\d+) fills", note)
    assert m, note
    assert int(m.group(1)) > 0, note
    assert int(m.group(2)) > 0, note
    assert _rows(dom, "features-table") >= 10


def test_models_page_shows_registered_versions_and_metrics(dashboard_world: dict[str, Any]) -> None:
    dom = _page(dashboard_world, "/models", "models")
    shown = [_kpi(dom, a) for a in ("champion", "challenger")]
    assert any(re.search(r" v\d+$", v) for v in shown), shown
    assert _rows(dom, "models-metrics-table") >= 3
    assert _rows(dom, "models-versions-table") >= 1
    link = dom.find("mlflow-link")
    assert link is not None
    assert link.attrs["href"].startswith(dashboard_world["settings"].mlflow_uri)


def test_data_quality_page_shows_validations_and_docs(dashboard_world: dict[str, Any]) -> None:
    dom = _page(dashboard_world, "/data-quality", "data-quality")
    results = dom.find("quality-results")
    assert results is not None
    assert len(results.by_class("dq-row")) >= 2
    assert dom.find("data-docs-link") is not None
    docs = httpx.get(dashboard_world["url"] + "/data-docs/index.html", timeout=5)
    assert docs.status_code == 200
    assert "expectation" in docs.text.lower()


def test_system_page_shows_health_and_process_metrics(dashboard_world: dict[str, Any]) -> None:
    dom = _page(dashboard_world, "/system", "system")
    up, total = (int(x) for x in _kpi(dom, "targets-up").split("/"))
    assert up >= len(dashboard_world["jobs"])
    assert total >= up
    assert _rows(dom, "sys-targets-table") >= len(dashboard_world["jobs"])
    _graph(dom, "sys-graph-memory", min_traces=len(dashboard_world["jobs"]) - 1)
