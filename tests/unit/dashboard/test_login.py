"""The dashboard's controls ask for its login (issue "Nobody changes the system without a key": the
kill switch was a plain POST to ``/_dash-update-component`` that anyone on the port could send)."""

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


def test_reading_stays_open(dashboard: tuple[Any, Settings]) -> None:
    client, _s = dashboard
    for path in ("/", "/market", "/system", "/healthz", "/_dash-layout", "/_dash-dependencies"):
        assert client.get(path).status_code == 200, path
    routing = {
        "output": "..page.children...nav.children..",
        "outputs": [{"id": "page", "property": "children"}, {"id": "nav", "property": "children"}],
        "inputs": [{"id": "url", "property": "pathname", "value": "/market"}],
        "changedPropIds": ["url.pathname"],
        "state": [],
    }
    assert client.post("/_dash-update-component", json=routing).status_code == 200


def test_every_control_is_behind_the_login() -> None:
    """A new callback that changes state must be listed in CONTROLS; the list names real callbacks."""
    from dashboard.app import CONTROLS, create_app

    app = create_app(Settings(home=Path("/tmp/hft-dash-login-test")))
    public = set(app.server.config["PUBLIC_CALLBACKS"])
    assert set(app.callback_map) >= CONTROLS
    assert not CONTROLS & public
    assert public | CONTROLS == set(app.callback_map)
