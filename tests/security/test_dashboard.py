"""The running dashboard asks for its login before anything of the book shows and before its
kill switch can halt the bot (issue "Nobody changes the system without a key": the kill switch was
a plain POST to ``/_dash-update-component`` that anyone on the port could send)."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest

from hft.config import Settings
from tests.security.conftest import Running
from tests.unit.dashboard.test_login import _kill_switch_body, _refresh_body, _routing_body

pytestmark = [pytest.mark.integration, pytest.mark.security]


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def _bot(api: Running) -> Any:
    return httpx.get(f"{api.url}/bot", timeout=10).json()


def test_the_kill_switch_needs_the_login_and_then_halts_the_bot(
    dashboard: Running, api: Running, stack_settings: Settings
) -> None:
    s = stack_settings
    press = f"{dashboard.url}/_dash-update-component"
    before = _bot(api)
    assert before["state"] == "active", before
    for headers in ({}, _basic(s.dashboard_user, "wrong"), _basic("intruder", "x")):
        refused = httpx.post(press, json=_kill_switch_body(), headers=headers, timeout=10)
        assert refused.status_code == 401, refused.text[:300]
        assert "Basic" in refused.headers.get("WWW-Authenticate", "")
    assert _bot(api) == before  # the refused presses changed nothing
    login = _basic(s.dashboard_user, s.dashboard_password.get_secret_value())
    try:
        pressed = httpx.post(press, json=_kill_switch_body(), headers=login, timeout=30)
        assert pressed.status_code == 200, pressed.text[:300]
        assert _bot(api)["state"] == "halted"  # the login's press did reach the bot
    finally:
        httpx.post(
            f"{api.url}/bot/resume",
            json={"reason": "security suite"},
            headers={"X-API-Key": "security-suite-key"},
            timeout=10,
        )


@pytest.mark.parametrize("path", ["/", "/models", "/system", "/_dash-layout", "/data-docs/index.html"])
def test_pages_ask_for_the_login(dashboard: Running, path: str) -> None:
    r = httpx.get(f"{dashboard.url}{path}", timeout=10)
    assert r.status_code == 401, (path, r.status_code)


@pytest.mark.parametrize("body", [_routing_body("/"), _refresh_body()], ids=["route", "refresh"])
def test_callbacks_that_read_the_book_ask_for_the_login(dashboard: Running, body: dict[str, Any]) -> None:
    r = httpx.post(f"{dashboard.url}/_dash-update-component", json=body, timeout=10)
    assert r.status_code == 401, r.text[:300]


def test_only_health_and_metrics_answer_without_it(dashboard: Running) -> None:
    assert httpx.get(f"{dashboard.url}/healthz", timeout=10).json() == {"status": "ok"}
    assert httpx.get(f"{dashboard.url}/metrics", timeout=10).status_code == 200
