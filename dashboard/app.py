"""The Dash trading dashboard: ``python -m dashboard.app`` (what ``hft run dashboard`` starts).

Pages: Trading, Market, Models, Data quality, System. It reads PostgreSQL, MLflow and
Prometheus and writes nothing, except the kill switch, which asks the API (with the API key)
to halt the bot. Every page, callback, asset and the data docs ask for the dashboard's login
(HTTP basic auth through dash-auth: ``HFT_DASHBOARD_USER`` / ``HFT_DASHBOARD_PASSWORD``,
generated into ``HFT_HOME/credentials.json``; ``hft stack credentials``). Only ``/metrics``
(Prometheus scrapes it) and ``/healthz`` (the supervisor and ``hft stack status``) stay open.
It serves the Great Expectations data docs at ``/data-docs/``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dash import Dash, dcc, html
from dash_auth import BasicAuth
from flask import Response, abort, send_from_directory
from prometheus_client import CONTENT_TYPE_LATEST, Gauge, generate_latest
from werkzeug.routing import Map, Rule

from dashboard import pages
from hft.config import Settings, get_settings
from hft.logs import setup_logging
from hft.reporting import quality

log = logging.getLogger(__name__)

UP = Gauge("hft_dashboard_up", "1 while the dashboard serves")
ASSETS = Path(__file__).resolve().parent / "assets"
# what answers without the login: Prometheus' scrape and the health check (they carry no data)
PUBLIC_ROUTES = ["/metrics", "/healthz"]


def _utc_now() -> datetime:
    return datetime.now(UTC)


def create_app(settings: Settings | None = None, clock: Callable[[], datetime] = _utc_now) -> Dash:
    """Build the Dash app (layout, callbacks, /metrics, /healthz, /data-docs) for ``settings``."""
    s = settings or get_settings()
    app = Dash(
        __name__,
        title="HFT dashboard",
        update_title=None,
        suppress_callback_exceptions=True,
        assets_folder=str(ASSETS),
        serve_locally=True,
    )
    app.layout = html.Div(
        [
            dcc.Location(id="url"),
            dcc.Interval(id="tick", interval=int(s.dashboard_refresh_s * 1000)),
            html.Div(id="nav", className="topbar", children=pages.nav_bar("/")),
            html.Div(id="page"),
        ]
    )
    pages.register_all(app, s, clock)
    BasicAuth(app, {s.dashboard_user: s.dashboard_password.get_secret_value()})
    # set here, not through public_routes=: dash-auth would add Dash's own routes (layout, scripts) too
    app.server.config["PUBLIC_ROUTES"] = Map([Rule(r) for r in PUBLIC_ROUTES]).bind("")
    server = app.server

    @server.route("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(), mimetype=CONTENT_TYPE_LATEST)

    @server.route("/healthz")
    def healthz() -> dict[str, Any]:
        return {"status": "ok"}

    @server.route("/data-docs/<path:sub>")
    def data_docs(sub: str) -> Response:
        index = quality.data_docs_index(s)
        if index is None:
            abort(404)
        return send_from_directory(index.parent, sub)

    UP.set(1)
    return app


def main() -> None:
    """Serve the dashboard on ``bind_host:port("dashboard")`` with gunicorn (threads, one process)."""
    from gunicorn.app.base import BaseApplication

    settings = get_settings()
    setup_logging(settings.log_level, "dashboard")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per Prometheus/MLflow call otherwise
    app = create_app(settings)

    class _Server(BaseApplication):  # type: ignore[misc]  # gunicorn ships no type hints
        def load_config(self) -> None:
            self.cfg.set("bind", f"{settings.bind_host}:{settings.port('dashboard')}")
            self.cfg.set("workers", 1)  # one process: the /metrics registry lives in it
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("threads", 8)
            self.cfg.set("timeout", 60)
            self.cfg.set("graceful_timeout", 10)
            self.cfg.set("accesslog", None)
            # gunicorn's control socket sits in ~/.gunicorn by default: shared by every instance
            self.cfg.set("control_socket_disable", True)

        def load(self) -> Any:
            return app.server

    log.info("dashboard on http://%s:%d/", settings.bind_host, settings.port("dashboard"))
    _Server().run()


if __name__ == "__main__":
    main()
