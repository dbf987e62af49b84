"""Every dashboard page asks for its login (issue "Nobody changes the system without a key": the kill
switch was a plain POST anyone on the port could send, and the pages showed the book to anyone).
Only what Prometheus and the supervisor need, /metrics and /healthz, answers without it."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from hft.config import Settings


def _kill_switch_body() -> dict[str, Any]:
    """What the browser sends when the operator confirms "Halt bot"."""
    return {
        "output": "kill-result.children",
        "outputs": {"id": "kill-result", "property": "children"},
        "inputs": [
            {"id": "halt-confirm", "property": "submit_n_clicks", "value": 1},
            {"id": "resume-confirm", "property": "submit_n_clicks", "value": None},
        ],
        "changedPropIds": ["halt-confirm.submit_n_clicks"],
        "state": [],
    }


def _routing_body(path: str) -> dict[str, Any]:
    """What the browser sends to render a page."""
    return {
        "output": "..page.children...nav.children..",
        "outputs": [{"id": "page", "property": "children"}, {"id": "nav", "property": "children"}],
        "inputs": [{"id": "url", "property": "pathname", "value": path}],
        "changedPropIds": ["url.pathname"],
        "state": [],
    }


def _refresh_body() -> dict[str, Any]:
    """The Trading page's refresh: the book's numbers."""
    outs = ["trading-error", "trading-cards", "equity-graph", "equity-note", "positions", "bot-state"]
    props = ["children", "children", "figure", "children", "children", "children"]
    return {
        "output": "..trading-error.children...trading-cards.children...equity-graph.figure..."
        "equity-note.children...positions.children...bot-state.children..",
        "outputs": [{"id": i, "property": p} for i, p in zip(outs, props, strict=True)],
        "inputs": [{"id": "tick", "property": "n_intervals", "value": 1}],
        "changedPropIds": ["tick.n_intervals"],
        "state": [],
    }


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
def dashboard(tmp_path: Path) -> tuple[Any, Settings]:
    from dashboard.app import create_app

    # the API the kill switch would call is not running: with the login, the press reaches it and fails
    s = Settings(home=tmp_path, api_url="http://127.0.0.1:9", api_key="k")
    return create_app(s).server.test_client(), s


def test_the_kill_switch_asks_for_the_login(dashboard: tuple[Any, Settings]) -> None:
    client, s = dashboard
    refused = client.post("/_dash-update-component", json=_kill_switch_body())
    assert refused.status_code == 401
    assert "Basic" in refused.headers.get("WWW-Authenticate", "")
    wrong = client.post(
        "/_dash-update-component", json=_kill_switch_body(), headers=_basic(s.dashboard_user, "x")
    )
    assert wrong.status_code == 401
    login = _basic(s.dashboard_user, s.dashboard_password.get_secret_value())
    pressed = client.post("/_dash-update-component", json=_kill_switch_body(), headers=login)
    assert pressed.status_code == 200
    assert "halt failed" in pressed.get_data(as_text=True)  # the press ran (the API is down here)


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/market",
        "/models",
        "/data-quality",
        "/system",
        "/_dash-layout",
        "/_dash-dependencies",
        "/data-docs/index.html",
        "/assets/style.css",
        "/no-such-page",
    ],
)
def test_every_page_and_asset_asks_for_the_login(dashboard: tuple[Any, Settings], path: str) -> None:
    client, s = dashboard
    refused = client.get(path)
    assert refused.status_code == 401, path
    assert "Basic" in refused.headers.get("WWW-Authenticate", "")
    assert client.get(path, headers=_basic(s.dashboard_user, "wrong")).status_code == 401


def test_pages_open_with_the_login(dashboard: tuple[Any, Settings]) -> None:
    client, s = dashboard
    login = _basic(s.dashboard_user, s.dashboard_password.get_secret_value())
    for path in (
        "/",
        "/market",
        "/models",
        "/data-quality",
        "/system",
        "/_dash-layout",
        "/_dash-dependencies",
    ):
        assert client.get(path, headers=login).status_code == 200, path
    routed = client.post("/_dash-update-component", json=_routing_body("/market"), headers=login)
    assert routed.status_code == 200
    assert "page-market" in routed.get_data(as_text=True)


@pytest.mark.parametrize("body", [_routing_body("/"), _routing_body("/system"), _refresh_body()])
def test_every_callback_asks_for_the_login(dashboard: tuple[Any, Settings], body: dict[str, Any]) -> None:
    client, _s = dashboard
    assert client.post("/_dash-update-component", json=body).status_code == 401


def test_only_health_and_metrics_stay_open(dashboard: tuple[Any, Settings]) -> None:
    from dashboard.app import PUBLIC_ROUTES

    client, _s = dashboard
    assert sorted(PUBLIC_ROUTES) == ["/healthz", "/metrics"]
    assert client.get("/healthz").get_json() == {"status": "ok"}
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert "hft_dashboard_up" in metrics.get_data(as_text=True)
    # a routing callback for an open path renders nothing of the book
    leaked = client.post("/_dash-update-component", json=_routing_body("/healthz"))
    assert "page-trading" not in leaked.get_data(as_text=True)
