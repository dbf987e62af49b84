"""The first hour on the dashboard: headless Chromium logs in and walks every page of the replayed stack.

Each page is screenshotted into tests/artifacts/dashboard/ (git-ignored) and must show no error
(no error box, no HTTP error, no script exception), no empty chart where the stack has data, and
no red status on this healthy stack. With HFT_UPDATE_SCREENSHOT=1 the Trading page's screenshot
also replaces docs/screenshot.png (the README's picture).
"""

from __future__ import annotations

import base64
import os
import re
import shutil
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from hft.config import REPO_ROOT
from tests.e2e.dashboard import browser

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(browser.chromium() is None, reason="needs chromium")]

NUMBER = re.compile(r"-?[\d,]+(\.\d+)?")
EMPTY_CHART = ("no samples in this window yet", "no fills yet", "no market data")

# every graph's drawn y values and its y axis' range and tick labels, read from Plotly's own state
GRAPHS_JS = """Array.from(document.querySelectorAll('.dash-graph')).map(g => {
  const gd = g.querySelector('.js-plotly-plot');
  const traces = gd && gd._fullData ? gd._fullData.filter(t => t.visible !== false) : [];
  const ys = traces.flatMap(t => Array.from(t.y || []).map(Number).filter(v => isFinite(v)));
  const first = traces.length ? Array.from(traces[0].y || []) : [];
  const ax = gd && gd._fullLayout ? gd._fullLayout.yaxis : null;
  return {id: g.id, ys: ys, range: ax ? ax.range.map(Number) : null,
          ticks: g.querySelectorAll('.ytick').length,
          last: first.length ? Number(first[first.length - 1]) : null};
})"""


@pytest.fixture(scope="module")
def chrome(dashboard_world: dict[str, Any]) -> Iterator[browser.Browser]:
    user, password = dashboard_world["login"]
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    with browser.Browser({"Authorization": f"Basic {token}"}) as b:
        yield b


def _page(world: dict[str, Any], chrome: browser.Browser, path: str, name: str) -> browser.Node:
    problems = chrome.open(world["url"] + path)
    chrome.screenshot(world["artifacts"] / f"{name}.png")
    html = chrome.dom()
    (world["artifacts"] / f"{name}.html").write_text(html)
    assert not problems.all(), f"{name}: {problems.all()}"
    dom = browser.parse(html)
    errors = dom.by_class("error-box")
    assert not errors, f"{name}: error boxes: {[e.all_text() for e in errors]}"
    red = [n.all_text() for n in dom.by_class("bad")]
    assert not red, f"{name}: red status on a healthy stack: {red}"
    return dom


def _kpi(dom: browser.Node, key: str) -> browser.Node:
    node = dom.find(f"kpi-{key}")
    assert node is not None, f"kpi-{key} missing"
    return node.by_class("value")[0]


def _graphs(chrome: browser.Browser) -> dict[str, dict[str, Any]]:
    return {g["id"]: g for g in chrome.evaluate(GRAPHS_JS)}


def _drawn(dom: browser.Node, graph_id: str, min_traces: int = 1) -> None:
    graph = dom.find(graph_id)
    assert graph is not None, f"{graph_id} missing"
    text = graph.all_text()
    assert not any(e in text for e in EMPTY_CHART), f"{graph_id} is empty: {text[:200]}"
    traces = browser.plotted_traces(graph)
    assert len(traces) >= min_traces, f"{graph_id}: {len(traces)} drawn traces, want {min_traces}"


def _scaled(graph: dict[str, Any], has_data: bool = False) -> None:
    """Every finite value inside the y axis' range, and more than one tick label on it."""
    assert graph["ys"] or not has_data, f"{graph['id']}: no values drawn"
    if not graph["ys"]:
        return
    lo, hi = graph["range"]
    assert all(lo <= y <= hi for y in graph["ys"]), f"{graph['id']}: values outside y range {lo}..{hi}"
    assert graph["ticks"] >= 2, f"{graph['id']}: {graph['ticks']} y tick labels"


def _rows(dom: browser.Node, table_id: str) -> int:
    table = dom.find(table_id)
    assert table is not None, f"{table_id} missing"
    return browser.table_rows(table)


def _cells(dom: browser.Node, table_id: str) -> list[list[str]]:
    table = dom.find(table_id)
    assert table is not None, f"{table_id} missing"
    return [
        [c.all_text() for c in r.children if c.tag == "td"]
        for r in table.walk()
        if r.tag == "tr" and any(c.tag == "td" for c in r.children)
    ]


def test_every_page_asks_for_the_login(dashboard_world: dict[str, Any]) -> None:
    for path in ("/", "/market", "/models", "/data-quality", "/system", "/data-docs/index.html"):
        assert httpx.get(dashboard_world["url"] + path, timeout=5).status_code == 401, path
    assert httpx.get(dashboard_world["url"] + "/healthz", timeout=5).status_code == 200


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


def test_trading_page_numbers_agree(dashboard_world: dict[str, Any], chrome: browser.Browser) -> None:
    dom = _page(dashboard_world, chrome, "/", "trading")
    fills = int(_kpi(dom, "fills").all_text())
    assert fills >= 2
    equity = float(_kpi(dom, "equity").attrs["data-value"])
    assert NUMBER.fullmatch(_kpi(dom, "equity").all_text())
    net = float(_kpi(dom, "net-pnl").attrs["data-value"])
    assert net == pytest.approx(equity - dashboard_world["settings"].starting_cash, abs=1e-6)
    win = _kpi(dom, "win-rate").all_text()
    assert win == "—" or win.endswith("%"), win
    assert _kpi(dom, "fees").all_text() not in ("-", "0.00")
    _drawn(dom, "equity-graph")
    graphs = _graphs(chrome)
    curve = graphs["equity-graph"]
    _scaled(curve, has_data=True)
    assert curve["last"] == pytest.approx(equity, abs=1e-6), "the curve's last point is not the Equity tile"
    # the drawdown tile is the curve's largest fall below its running peak (from the starting cash)
    peak, worst = dashboard_world["settings"].starting_cash, 0.0
    for y in curve["ys"]:
        peak = max(peak, y)
        worst = max(worst, (peak - y) / peak)
    assert float(_kpi(dom, "drawdown").attrs["data-value"]) == pytest.approx(worst, abs=1e-12)
    assert "marked to market" in dom.find("equity-note").all_text()
    assert _rows(dom, "orders-table") >= 2
    assert _rows(dom, "fills-table") >= 2
    assert _rows(dom, "positions-table") >= 1
    assert dom.find("bot-state-badge") is not None
    if os.environ.get("HFT_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(dashboard_world["artifacts"] / "trading.png", REPO_ROOT / "docs" / "screenshot.png")


def test_market_page_overlays_signals_and_explains_features(
    dashboard_world: dict[str, Any], chrome: browser.Browser
) -> None:
    from hft.features.spec import get_spec
    from hft.reporting.models import model_features

    dom = _page(dashboard_world, chrome, "/market", "market")
    _drawn(dom, "price-graph", min_traces=3)  # trades, at least one signal side, fills
    _scaled(_graphs(chrome)["price-graph"], has_data=True)
    note = dom.find("price-note").all_text()
    m = re.search(r"(\d+) signals, (\d+) fills", note)
    assert m, note
    assert int(m.group(1)) > 0, note
    assert int(m.group(2)) > 0, note
    served = model_features(dashboard_world["settings"])
    assert served is not None
    n_model = get_spec(served.feature_version).n_features
    caption = dom.find("features-note").all_text()
    assert f"reads {n_model} of them ({served.feature_version})" in caption, caption
    rows = _cells(dom, "features-table")
    assert len(rows) >= n_model
    assert sum(r[2] == "yes" for r in rows) == n_model
    for feature, value, _reads, why in rows:
        assert value != "absent" or why, f"{feature} is absent without a reason"


def test_models_page_explains_the_two_net_pnls(
    dashboard_world: dict[str, Any], chrome: browser.Browser
) -> None:
    dom = _page(dashboard_world, chrome, "/models", "models")
    shown = [_kpi(dom, a).all_text() for a in ("champion", "challenger")]
    assert all(re.search(r" v\d+$", v) for v in shown), shown
    assert _rows(dom, "models-metrics-table") >= 3
    assert "pooled" in dom.find("models-wf-note").all_text()
    assert "most recent test window" in dom.find("models-gate-note").all_text()
    # champion and challenger are two versions, side by side; the live record names both
    champion, challenger = dashboard_world["champion"], dashboard_world["challenger"]
    assert champion != challenger
    assert shown[0].endswith(f" v{champion}"), shown
    assert shown[1].endswith(f" v{challenger}"), shown
    live_note = dom.find("models-live-note").all_text()
    assert f"challenger v{challenger} beside champion v{champion}" in live_note, live_note
    versions = _cells(dom, "models-versions-table")
    aliases = {a.strip() for row in versions for a in row[2].split(",") if a.strip()}
    assert {"champion", "challenger"} <= aliases, versions
    link = dom.find("mlflow-link")
    assert link is not None
    assert link.attrs["href"].startswith(dashboard_world["settings"].mlflow_uri)
    if os.environ.get("HFT_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(
            dashboard_world["artifacts"] / "models.png", REPO_ROOT / "docs" / "screenshot-models.png"
        )


def test_data_quality_page_is_green(dashboard_world: dict[str, Any], chrome: browser.Browser) -> None:
    dom = _page(dashboard_world, chrome, "/data-quality", "data-quality")
    results = dom.find("quality-results")
    assert results is not None
    assert len(results.by_class("dq-row")) >= 2
    assert dom.find("data-docs-link") is not None
    passed, total = (int(x) for x in _kpi(dom, "suites-passed").all_text().split("/"))
    assert passed == total
    user, password = dashboard_world["login"]
    docs = httpx.get(dashboard_world["url"] + "/data-docs/index.html", timeout=5, auth=(user, password))
    assert docs.status_code == 200
    assert "expectation" in docs.text.lower()


def test_system_page_is_healthy_scaled_and_says_its_load(
    dashboard_world: dict[str, Any], chrome: browser.Browser
) -> None:
    dom = _page(dashboard_world, chrome, "/system", "system")
    up, total = (int(x) for x in _kpi(dom, "targets-up").all_text().split("/"))
    assert up >= len(dashboard_world["jobs"])
    assert up == total, "a Prometheus target is down"
    assert _rows(dom, "sys-targets-table") >= len(dashboard_world["jobs"])
    graphs = _graphs(chrome)
    live = ("throughput", "tick_to_feature_p99", "tick_to_signal_p99")
    with_data = ("memory", "cpu", "api_latency_p99", *live)
    for graph in graphs.values():
        key = graph["id"].removeprefix("sys-graph-")
        _scaled(graph, has_data=key in with_data and (dashboard_world["fresh"] or key not in live))
    for key in ("memory", "cpu", "api_latency_p99"):
        _drawn(dom, f"sys-graph-{key}")
    assert "ticks/s" in dom.find("sys-load").all_text()
    if not dashboard_world["fresh"]:
        pytest.skip("the replay was ingested by an earlier run of this test home: no live load to show")
    for key in live:
        _drawn(dom, f"sys-graph-{key}")
    avg = _kpi(dom, "load-avg").attrs["data-value"]
    assert avg, "no ticks/s while the latencies were taken"
    assert float(avg) > 0, "no ticks/s while the latencies were taken"
