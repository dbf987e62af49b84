"""Health of the application processes and of supervisord, for ``hft stack status`` and ``hft up``.

Each process's state comes from supervisord's XML-RPC interface (``supervisor.getState``,
``supervisor.getAllProcessInfo``, with the login from the settings); each process that serves HTTP
is then asked itself: the API's ``/ready`` (``/health`` tells a live but not ready API from a dead
one), the dashboard's page (with its login), Airflow's api-server ``/api/v2/monitor/health`` (metadatabase and
scheduler healthy), every other process's ``/metrics``. A process supervisord does not run shows
as ``stopped`` (``hft up`` not run, or run for other processes).
"""

from __future__ import annotations

import base64
import http.client
import json
import time
import urllib.error
import urllib.request
import xmlrpc.client
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from hft.config import Settings
from hft.devstack.airflow import admin_passwords_file, airflow_url
from hft.devstack.host import http_ok
from hft.devstack.service import PartStatus
from hft.devstack.supervisor import PROCESSES, ProcessSpec

STARTING_GRACE_S = 90.0  # a process running for less than this that does not answer yet is "starting"


class _TimeoutTransport(xmlrpc.client.Transport):
    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.timeout = timeout

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        conn = super().make_connection(host)
        conn.timeout = self.timeout
        return conn


def supervisor_url(settings: Settings) -> str:
    """supervisord's web UI and XML-RPC base URL (login: ``hft stack credentials``)."""
    return f"http://{settings.bind_host}:{settings.port('supervisor')}/"


def supervisor_rpc(settings: Settings, timeout: float = 2.0) -> Any:
    """An XML-RPC proxy of supervisord with the login from the settings (nothing on a command line)."""
    user = quote(settings.supervisor_user, safe="")
    password = quote(settings.supervisor_password.get_secret_value(), safe="")
    host = f"{settings.bind_host}:{settings.port('supervisor')}"
    return xmlrpc.client.ServerProxy(
        f"http://{user}:{password}@{host}/RPC2", transport=_TimeoutTransport(timeout)
    )


@dataclass(frozen=True)
class Check:
    """How one process is shown and asked: its URL in the table and a check returning (ok, note)."""

    url: str
    check: Callable[[], tuple[bool, str]] | None = None


def _http_check(url: str) -> Callable[[], tuple[bool, str]]:
    return lambda: (http_ok(url, timeout=3.0), "")


def _page_check(url: str, user: str, password: str) -> Callable[[], tuple[bool, str]]:
    """The page itself, with its login (basic auth): 2xx, or what it answered."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()

    def check() -> tuple[bool, str]:
        request = urllib.request.Request(url, headers={"Authorization": f"Basic {token}"})  # noqa: S310 - our localhost URL
        try:
            with urllib.request.urlopen(request, timeout=5.0) as resp:  # noqa: S310 - our localhost URL
                return 200 <= resp.status < 300, ""
        except urllib.error.HTTPError as exc:
            return False, f"the page answered {exc.code}"
        except OSError:
            return False, ""

    return check


def _api_check(base: str) -> Callable[[], tuple[bool, str]]:
    def check() -> tuple[bool, str]:
        try:
            with urllib.request.urlopen(f"{base}/ready", timeout=3.0) as resp:  # noqa: S310 - localhost
                return 200 <= resp.status < 300, ""
        except urllib.error.HTTPError as exc:
            if exc.code == 503 and http_ok(f"{base}/health", timeout=3.0):
                try:
                    reasons = json.loads(exc.read() or b"{}").get("reasons") or []
                except ValueError:
                    reasons = []
                return False, "not ready: " + ("; ".join(reasons) or "503")
            return False, f"/ready answered {exc.code}"
        except OSError:
            return False, ""

    return check


def _airflow_check(base: str) -> Callable[[], tuple[bool, str]]:
    def check() -> tuple[bool, str]:
        try:
            with urllib.request.urlopen(f"{base}/api/v2/monitor/health", timeout=3.0) as resp:  # noqa: S310
                body = json.loads(resp.read() or b"{}")
        except (OSError, ValueError):
            return False, ""
        parts = {k: (v or {}).get("status") for k, v in body.items() if isinstance(v, dict)}
        bad = sorted(k for k, v in parts.items() if v not in ("healthy", None))
        essential = all(parts.get(k) == "healthy" for k in ("metadatabase", "scheduler"))
        return essential, (f"unhealthy: {', '.join(bad)}" if bad else "")

    return check


def checks(settings: Settings) -> dict[str, Check]:
    """The URL shown and the health check of every application process."""
    h = settings.bind_host
    out: dict[str, Check] = {}
    for spec in PROCESSES:
        metrics = f"http://{h}:{settings.port(spec.metrics_port)}/metrics" if spec.metrics_port else ""
        out[spec.name] = Check(metrics, _http_check(metrics) if metrics else None)
    api = f"http://{h}:{settings.port('api')}"
    out["api"] = Check(f"{api}/docs", _api_check(api))
    dashboard = f"http://{h}:{settings.port('dashboard')}/"
    dashboard_login = (settings.dashboard_user, settings.dashboard_password.get_secret_value())
    out["dashboard"] = Check(dashboard, _page_check(dashboard, *dashboard_login))
    airflow = airflow_url(settings)
    out["airflow"] = Check(f"{airflow}/", _airflow_check(airflow))
    out["exchange"] = Check(f"ws://{h}:{settings.port('exchange')}/stream", out["exchange"].check)
    return out


def _notes(settings: Settings) -> dict[str, str]:
    return {
        "airflow": f"user {settings.airflow_admin_user}, password in {admin_passwords_file(settings)} "
        "(hft airflow login)",
    }


def app_status(settings: Settings) -> list[PartStatus]:
    """A row per enabled application process and one for supervisord."""
    specs = [p for p in PROCESSES if p.enabled(settings)]
    table = checks(settings)
    sup_url = supervisor_url(settings)
    sup_note = f"login {settings.supervisor_user} (hft stack credentials)"
    try:
        rpc = supervisor_rpc(settings)
        state = rpc.supervisor.getState()
        infos = {i["name"]: i for i in rpc.supervisor.getAllProcessInfo()}
    except (OSError, xmlrpc.client.Error) as exc:
        refused = isinstance(exc, ConnectionRefusedError)
        note = "not running (hft up)" if refused else f"no answer: {type(exc).__name__}"
        notes = _notes(settings)
        rows = [
            PartStatus(p.name, table[p.name].url or "-", False, notes.get(p.name, ""), state="stopped")
            for p in specs
        ]
        sup = PartStatus(
            "supervisor", sup_url, False, f"{note}; {sup_note}", state="stopped" if refused else ""
        )
        return [*rows, sup]
    running = state.get("statename") == "RUNNING"
    sup = PartStatus("supervisor", sup_url, running, f"{state.get('statename', '?')}; {sup_note}")
    notes = _notes(settings)
    rows = [
        _process_row(spec, infos.get(spec.name), table[spec.name], notes.get(spec.name, "")) for spec in specs
    ]
    return [*rows, sup]


def _process_row(spec: ProcessSpec, info: dict[str, Any] | None, check: Check, note: str) -> PartStatus:
    url = check.url or "-"
    if info is None:
        return PartStatus(spec.name, url, False, note, state="stopped")
    statename = str(info.get("statename", "?"))
    if statename == "STOPPED":
        return PartStatus(spec.name, url, False, note, state="stopped")
    if statename != "RUNNING":
        # STARTING, BACKOFF (crashed, restarting), FATAL, EXITED: supervisord's description says why
        return PartStatus(spec.name, url, False, _join(statename, str(info.get("description", "")), note))
    if check.check is None:  # no HTTP endpoint: supervisord's RUNNING is the check
        return PartStatus(spec.name, url, True, note)
    ok, why = check.check()
    if ok:
        return PartStatus(spec.name, url, True, note)
    uptime = time.time() - float(info.get("start", 0) or 0)
    if why.startswith("not ready"):
        return PartStatus(spec.name, url, False, _join(why, note), state="not ready")
    if uptime < STARTING_GRACE_S:
        return PartStatus(
            spec.name, url, False, _join(f"starting ({uptime:.0f}s)", why, note), state="starting"
        )
    return PartStatus(spec.name, url, False, _join("running but not answering", why, note))


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)
