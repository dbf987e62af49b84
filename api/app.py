"""The model server's app factory: ``uvicorn api.app:create_app --factory``.

At start it builds the scorer (registry + online store), loads the champion in the
background and polls the alias every ``settings.model_poll_s`` seconds; ``/ready`` answers
503 until the model is there. Errors are JSON ``{error, reason}``, never a stack trace.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.metrics import ApiMetrics
from api.routes import ApiError, router
from hft import heap
from hft.config import Settings, get_settings
from hft.logs import setup_logging
from hft.trading.scoring import Scorer

log = logging.getLogger("api")

_KINDS = {400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
          422: "invalid_request", 503: "unavailable"}


class _LatencyMiddleware:
    """Time every request into the histogram (pure ASGI: cheaper than BaseHTTPMiddleware)."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            self.metrics.latency.labels(path, scope["method"]).observe(time.perf_counter() - t0)
            if status >= 500 and status != 503:
                self.metrics.errors.labels("internal").inc()


def _error(status: int, kind: str, reason: str, metrics: ApiMetrics) -> JSONResponse:
    metrics.errors.labels(kind).inc()
    return JSONResponse({"error": kind, "reason": reason}, status_code=status)


def _redis_ping(settings: Settings) -> Callable[[], None]:
    import redis

    client = redis.Redis.from_url(settings.redis_dsn, socket_timeout=0.5, socket_connect_timeout=0.5)

    def ping() -> None:
        client.ping()

    return ping


def _known_feature_version(version: str) -> bool:
    """True when the feature code knows the model's feature version (it can compute those rows)."""
    try:
        from hft.features.spec import get_spec
    except ImportError:
        return False
    try:
        get_spec(version)
    except (KeyError, ValueError):
        return False
    return True


def create_app(
    settings: Settings | None = None,
    scorer: Scorer | None = None,
    clock: Callable[[], datetime] | None = None,
    feature_version: str | None = None,
) -> FastAPI:
    """Build the model server (the arguments let tests inject their own parts)."""
    settings = settings or get_settings()
    setup_logging(settings.log_level, "api")
    metrics = ApiMetrics.create()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(_poll_alias(app))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app = FastAPI(
        title="hft model server",
        version="1",
        description="Scores the latest online features with the champion model. Errors: JSON {error, reason}.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.clock = clock or (lambda: datetime.now(UTC))
    # built in the background when not injected (feast and mlflow imports take seconds): /health
    # answers at once and /ready says what is missing
    app.state.scorer = scorer
    app.state.scorer_error = None if scorer else "starting"
    # a fixed version (tests) or any version the feature code knows
    app.state.feature_version = feature_version
    app.state.known_feature_version = _known_feature_version
    app.state.ping_online_store = _redis_ping(settings)
    app.include_router(router)
    app.add_middleware(_LatencyMiddleware, metrics=metrics)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status_code, exc.kind, str(exc.detail), metrics)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, _KINDS.get(exc.status_code, "http_error"), str(exc.detail), metrics)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for e in exc.errors()[:5]:
            loc = ".".join(str(p) for p in e.get("loc", ()) if p != "body")
            parts.append(f"{loc or 'body'}: {e.get('msg', 'invalid')}")
        return _error(422, "invalid_request", "; ".join(parts) or "invalid request", metrics)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return _error(500, "internal", f"internal error ({type(exc).__name__})", metrics)

    return app


def _build_scorer(settings: Settings) -> Scorer:
    from hft.trading.scoring import build_scorer

    return build_scorer(settings)


async def _poll_alias(app: FastAPI) -> None:
    """Build the scorer, load the champion, then every model_poll_s check whether the alias moved."""
    settings: Settings = app.state.settings
    metrics: ApiMetrics = app.state.metrics
    while True:
        scorer: Scorer | None = app.state.scorer
        if scorer is None:
            try:
                scorer = await asyncio.to_thread(_build_scorer, settings)
            except Exception as exc:  # the server stays up; /ready says why and the next round retries
                app.state.scorer_error = f"{type(exc).__name__}: {exc}"
                log.error("cannot build the scorer: %s", app.state.scorer_error)
            else:
                app.state.scorer, app.state.scorer_error = scorer, None
        if scorer is not None:
            swapped = await asyncio.to_thread(scorer.reload_if_moved)
            model = scorer.model
            if swapped and model is not None:
                metrics.reloads.inc()
                metrics.set_model(model)
                heap.freeze()  # the new model is what the server keeps: out of the collector's way
        await asyncio.sleep(settings.model_poll_s)
