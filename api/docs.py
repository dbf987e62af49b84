"""Swagger UI (``/docs``) and ReDoc (``/redoc``) served by the API itself, so they work offline.

FastAPI's own pages load their JavaScript and CSS from a CDN; here FastAPI's
``get_swagger_ui_html`` / ``get_redoc_html`` point at the same bundles served from
``/docs-static``. The bundles come from the ``fastapi-offline`` package (MIT; it ships
swagger-ui-dist and the ReDoc standalone build) installed from ``requirements/lock.txt``.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC_URL = "/docs-static"
ASSETS = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png")


def assets_dir() -> Path:
    """The folder of the Swagger UI and ReDoc bundles inside the installed ``fastapi_offline`` package."""
    return Path(str(files("fastapi_offline") / "static"))


def add_docs(app: FastAPI, docs_url: str = "/docs", redoc_url: str = "/redoc") -> None:
    """Serve the assets and both documentation pages (the app is built with ``docs_url=None, redoc_url=None``)."""
    missing = [name for name in ASSETS if not (assets_dir() / name).is_file()]
    if missing:
        raise FileNotFoundError(f"fastapi_offline lacks {missing}: reinstall requirements/lock.txt")
    app.mount(STATIC_URL, StaticFiles(directory=assets_dir()), name="docs-static")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get(docs_url, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{STATIC_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{STATIC_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{STATIC_URL}/favicon.png",
            # no badge that asks validator.swagger.io about the spec
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get(redoc_url, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{STATIC_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{STATIC_URL}/favicon.png",
            with_google_fonts=False,
        )
