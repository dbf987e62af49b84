"""The model server's app factory: ``uvicorn api.app:create_app --factory``.

At start it builds the scorer (registry + online store), loads the champion in the
background and polls the alias every ``settings.model_poll_s`` seconds; ``/ready`` answers
503 until the model is there. Errors are JSON ``{error, reason}``: a reason in words, never a
stack trace nor a driver's message (hosts and ports go to the log only). Request bodies over
``settings.api_max_body_bytes`` get 413 before they are read in full (:mod:`api.middleware`);
``/docs`` and ``/redoc`` are served with their assets from the API itself (:mod:`api.docs`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.docs import add_docs
from api.fast import FastPredict
from api.metrics import ApiMetrics
from api.middleware import TOO_LARGE_KIND, BodyLimitMiddleware
from api.routes import ApiError, router
from hft import heap
from hft.config import Settings, get_settings
from hft.logs import setup_logging
from hft.trading.scoring import NO_ALIAS, Scorer

log = logging.getLogger("api")

_KINDS = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: TOO_LARGE_KIND,
    422: "invalid_request",
    503: "unavailable",
}


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


def _json_reason(error: dict[str, Any], doc: object) -> str:
    """``request body is not valid JSON: Expecting value at line 1 column 11`` from FastAPI's json_invalid error."""
    what = str(error.get("ctx", {}).get("error") or "cannot be decoded")
    loc = error.get("loc", ())
    pos = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else None
    if pos is None or not isinstance(doc, str):
        return f"request body is not valid JSON: {what}"
    line = doc.count("\n", 0, pos) + 1
    column = pos - doc.rfind("\n", 0, pos)
    return f"request body is not valid JSON: {what} at line {line} column {column}"


def validation_reason(exc: RequestValidationError) -> str:
    """The reason of a 422, in words: what is wrong where (at most five problems)."""
    parts = []
    for e in exc.errors()[:5]:
        if e.get("type") == "json_invalid":
            parts.append(_json_reason(e, exc.body))
            continue
        loc = ".".join(str(p) for p in e.get("loc", ()) if p != "body")
        parts.append(f"{loc or 'body'}: {e.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def body_error_reason(cause: BaseException) -> str:
    """Why FastAPI could not read a body it was told is JSON (its own 400 says only that it could not)."""
    if isinstance(cause, UnicodeDecodeError):
        return (
            f"request body is not UTF-8 text: byte 0x{cause.object[cause.start]:02x} at offset {cause.start} "
            f"cannot be decoded as {cause.encoding}"
        )
    if isinstance(cause, RecursionError):
        return "request body is nested too deeply to parse"
    return f"request body could not be read ({type(cause).__name__})"


def _redis_ping(settings: Settings) -> Callable[[], None]:
    import redis

    client = redis.Redis.from_url(settings.redis_dsn, socket_timeout=0.5, socket_connect_timeout=0.5)

    def ping() -> None:
        client.ping()

    return ping


def _database_ping(settings: Settings) -> Callable[[], None]:
    """``SELECT 1`` on the trading database (the bot's kill switch and state live there)."""

    def ping() -> None:
        from sqlalchemy import text

        from hft.storage.db import engine

        with engine(settings).connect() as conn:
            conn.execute(text("SELECT 1"))

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
    challenger: Scorer | None = None,
) -> FastAPI:
    """Build the model server (the arguments let tests inject their own parts: with a scorer
    injected, the challenger is the one injected too, never one loaded from the registry)."""
    settings = settings or get_settings()
    setup_logging(settings.log_level, "api")
    metrics = ApiMetrics.create()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(_poll_alias(app))]
        if settings.api_predict_ahead:
            tasks.append(asyncio.create_task(_predict_ahead(app)))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    app = FastAPI(
        title="hft model server",
        version="1",
        description="Scores the latest online features with the champion model. Errors: JSON {error, reason}.",
        lifespan=lifespan,
        docs_url=None,  # served by add_docs with local assets instead of a CDN's
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.clock = clock or (lambda: datetime.now(UTC))
    # built in the background when not injected (feast and mlflow imports take seconds): /health
    # answers at once and /ready says what is missing
    app.state.scorer = scorer
    app.state.scorer_error = None if scorer else "starting"
    app.state.challenger = challenger  # the shadow of the challenger alias (built with the scorer)
    app.state.load_challenger = scorer is None
    # a fixed version (tests) or any version the feature code knows
    app.state.feature_version = feature_version
    app.state.known_feature_version = _known_feature_version
    app.state.ping_online_store = _redis_ping(settings)
    app.state.ping_database = _database_ping(settings)
    app.include_router(router)
    add_docs(app)
    if settings.api_fast_path:  # innermost: inside the body limit and the latency middleware
        app.add_middleware(FastPredict)
    # the limit sits inside the latency middleware, so refused requests are timed and counted too
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.api_max_body_bytes,
        on_reject=metrics.errors.labels(TOO_LARGE_KIND).inc,
    )
    app.add_middleware(_LatencyMiddleware, metrics=metrics)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status_code, exc.kind, str(exc.detail), metrics)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        reason = str(exc.detail)
        if exc.status_code == 400 and exc.__cause__ is not None:  # FastAPI could not read the body
            reason = body_error_reason(exc.__cause__)
        return _error(exc.status_code, _KINDS.get(exc.status_code, "http_error"), reason, metrics)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, "invalid_request", validation_reason(exc), metrics)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return _error(500, "internal", f"internal error ({type(exc).__name__})", metrics)

    return app


def _build_scorer(settings: Settings) -> Scorer:
    from hft.trading.scoring import build_scorer

    return build_scorer(settings)


def _challenger(settings: Settings, champion: Scorer) -> Scorer | None:
    try:
        from hft.trading.scoring import challenger_scorer

        return challenger_scorer(settings, champion)
    except Exception as exc:  # the champion serves without its shadow
        log.warning("no challenger scorer: %s: %s", type(exc).__name__, exc)
        return None


def _record_shadow(app: FastAPI, fields: dict[bytes, bytes], champion: Any) -> int:
    """Write the champion's score of a closed bar and the challenger's (scored now) to the live record."""
    from hft.storage.db import engine
    from hft.trading import shadow

    settings: Settings = app.state.settings
    symbol = champion.symbol
    open_time = datetime.fromtimestamp(int(fields[b"open_time_ns"]) / 1e9, UTC)
    close = float(fields[b"close"])
    interval = fields.get(b"interval", b"").decode() or settings.bar_interval

    def row(score: Any, role: str) -> Any:
        return shadow.ShadowRow(
            symbol,
            interval,
            open_time,
            score.model_name,
            score.model_version,
            role,
            score.prob_up,
            close,
            score.feature_time,
        )

    rows = [row(champion, "champion")]
    challenger: Scorer | None = app.state.challenger
    model = challenger.model if challenger is not None else None
    if challenger is not None and model is not None and str(model.version) != champion.model_version:
        try:
            theirs = challenger.score(symbol)
        except Exception as exc:  # e.g. a feature version the stream does not write: no shadow row
            app.state.metrics.ahead.labels("challenger_failed").inc()
            log.debug("challenger %s: %s: %s", model.version, type(exc).__name__, exc)
        else:
            if theirs.feature_time == champion.feature_time:
                rows.append(row(theirs, "challenger"))
    with engine(settings).begin() as conn:
        return shadow.record(conn, rows)


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
                # the message (a registry or Redis URL, host, port) goes to the log, not to clients
                app.state.scorer_error = (
                    f"it could not be built ({type(exc).__name__}); the server log has the details"
                )
                log.error("cannot build the scorer: %s: %s", type(exc).__name__, exc)
            else:
                app.state.scorer, app.state.scorer_error = scorer, None
        if scorer is not None:
            swapped = await asyncio.to_thread(scorer.reload_if_moved)
            model = scorer.model
            if swapped and model is not None:
                metrics.reloads.inc()
                metrics.set_model(model)
                heap.freeze()  # the new model is what the server keeps: out of the collector's way
        # the shadow, once the champion serves: a failed load is logged and retried next round
        if scorer is not None and scorer.model is not None and settings.shadow_challenger:
            challenger: Scorer | None = app.state.challenger
            if challenger is None and app.state.load_challenger:
                challenger = app.state.challenger = _challenger(settings, scorer)
            if challenger is not None:
                await asyncio.to_thread(challenger.reload_if_moved)
                if challenger.model is not None and challenger.last_reload_error == NO_ALIAS:
                    # the alias was removed, or holds the champion's version: no shadow, no second model
                    app.state.challenger = None
                    heap.freeze()
        await asyncio.sleep(settings.model_poll_s)


PREDICT_AHEAD_GROUP = "api-predict-ahead"


async def _predict_ahead(app: FastAPI) -> None:
    """Score every closed bar once, as soon as the calculator announces it (``hft:bars:closed``),
    and announce the score on ``hft:bars:scored``, where the trading bot reads it: the bot decides
    without a request, and a ``/predict`` for the bar (the dashboard's, anyone's) finds it cached.

    The API's workers read the closed bars in one consumer group, so each bar is scored and
    announced by one worker. A bar whose online row has moved on by the time it is scored, or that
    is older than two bars, is not announced: the bot asks ``/predict`` for it after its wait.
    A request that comes while the bar is being scored waits for that computation (``Scorer.score``).
    """
    import os
    import socket

    import redis.asyncio as aioredis
    from redis.exceptions import RedisError, ResponseError

    from hft.features.bars import interval_ns
    from hft.features.calculator import CLOSED_STREAM
    from hft.trading.scoring import SCORED_STREAM, SCORED_STREAM_MAXLEN, scored_entry

    settings: Settings = app.state.settings
    metrics: ApiMetrics = app.state.metrics
    client = aioredis.Redis.from_url(settings.redis_dsn, socket_timeout=5, socket_connect_timeout=2)
    consumer = f"api-{socket.gethostname()}-{os.getpid()}"
    max_age_ns = 2 * interval_ns(settings.bar_interval)

    async def ensure_group() -> None:
        try:
            await client.xgroup_create(CLOSED_STREAM, PREDICT_AHEAD_GROUP, id="$", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def score_and_announce(scorer: Scorer, fields: dict[bytes, bytes]) -> str:
        symbol = fields[b"symbol"].decode()
        score = await asyncio.to_thread(scorer.score, symbol)
        scored_for = int(score.feature_time.timestamp() * 1_000_000) * 1000
        if abs(scored_for - int(fields.get(b"feature_time_ns", b"0"))) >= 1000:
            return "moved"  # the row is a later bar's already
        await client.xadd(
            SCORED_STREAM,
            scored_entry(fields, score, time.time_ns()),
            maxlen=SCORED_STREAM_MAXLEN,
            approximate=True,
        )
        if settings.shadow_record and fields.get(b"close"):  # after the bot has its score
            try:
                await asyncio.to_thread(_record_shadow, app, fields, score)
            except Exception as exc:  # the live record is lost for this bar, the trading is not
                metrics.ahead.labels("record_failed").inc()
                log.warning("live record of %s: %s: %s", score.symbol, type(exc).__name__, exc)
        return "scored"

    grouped = False
    try:
        while True:
            try:
                if not grouped:
                    await ensure_group()
                    grouped = True
                batches: Any = await client.xreadgroup(
                    PREDICT_AHEAD_GROUP, consumer, {CLOSED_STREAM: ">"}, count=100, block=1000
                )
            except (RedisError, OSError) as exc:  # Redis restarting: the requests still work without us
                grouped = grouped and "NOGROUP" not in str(exc)
                log.debug("predict-ahead: %s: %s", type(exc).__name__, exc)
                await asyncio.sleep(1.0)
                continue
            latest: dict[str, dict[bytes, bytes]] = {}  # the newest bar of each symbol in this read
            ids: list[bytes] = []
            now = time.time_ns()
            for _stream, entries in batches or []:
                for entry_id, fields in entries:
                    ids.append(entry_id)
                    symbol = fields.get(b"symbol", b"").decode()
                    fresh = now - int(fields.get(b"published_ns", b"0")) <= max_age_ns
                    if fields.get(b"has_features") != b"0" and symbol in settings.symbols and fresh:
                        latest[symbol] = fields
            scorer: Scorer | None = app.state.scorer
            if latest and scorer is not None and scorer.model is not None:
                outcomes = await asyncio.gather(
                    *(score_and_announce(scorer, f) for f in latest.values()), return_exceptions=True
                )
                for outcome in outcomes:
                    failed = isinstance(outcome, BaseException)
                    metrics.ahead.labels("failed" if failed else str(outcome)).inc()
                    if failed:  # the bot's request for the bar will say why; here it is only a head start
                        log.debug("predict-ahead: %s: %s", type(outcome).__name__, outcome)
            if ids:
                with contextlib.suppress(RedisError, OSError):
                    await client.xack(CLOSED_STREAM, PREDICT_AHEAD_GROUP, *ids)
    finally:
        await client.aclose()
