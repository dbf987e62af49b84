"""Routes: thin wrappers over :class:`hft.trading.scoring.Scorer`.

Every status a route answers is listed in its ``responses`` (the OpenAPI spec is what clients
and schemathesis check against). Reasons are in words: a driver's message (hosts, ports, URLs)
goes to the log, never into a response.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from api.deps import ApiKeyDep, MetricsDep, ScorerDep, SettingsDep
from api.schemas import (
    BatchRequest,
    BatchResponse,
    BotState,
    BotStateRequest,
    ErrorBody,
    Health,
    ModelInfo,
    PredictRequest,
    PredictResponse,
    Ready,
    ReloadResponse,
)
from hft.config import TransientError
from hft.trading.scoring import (
    FeatureMismatchError,
    ModelUnavailableError,
    Scorer,
    ServingModel,
    UnknownSymbolError,
    describe,
)
from hft.trading.strategy import signal_from_prob

log = logging.getLogger("api")

_WHY = {
    400: "The body is not text the JSON parser can read (not UTF-8)",
    401: "Missing or wrong X-API-Key (always 401 when the server has no HFT_API_KEY)",
    404: "Unknown symbol, or no online features for it",
    413: "Request body larger than HFT_API_MAX_BODY_BYTES (refused before it is read in full)",
    422: "Invalid request: malformed JSON, wrong or missing fields, or rows that do not fit the model",
    503: "A dependency is unavailable: scorer, model, online store or trading database",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these error statuses: an :class:`ErrorBody` and what the status means here."""
    return {status: {"model": ErrorBody, "description": _WHY[status]} for status in statuses}


# 413 on every route: the body limit applies to any request with a body
router = APIRouter(responses=errors(413))
# what the online store raises when Redis is down (Feast's Redis store raises redis-py errors)
STORE_DOWN = (RedisError, OSError, TransientError)


class ApiError(HTTPException):
    """An HTTP error with a machine-readable kind beside the reason."""

    def __init__(self, status: int, kind: str, reason: str) -> None:
        super().__init__(status, reason)
        self.kind = kind


def _info(model: ServingModel) -> ModelInfo:
    return ModelInfo(**describe(model), alias="champion")


_NO_ALIAS = "no model version holds the alias"


def reload_error(scorer: Scorer) -> str | None:
    """The scorer's last reload error fit for a client: its kind, not its message (that is in the log).

    ``Scorer.last_reload_error`` is ``"<ExceptionType>: <message>"``, and the message of a registry
    or network error names hosts and ports.
    """
    err = scorer.last_reload_error
    if err is None or err == _NO_ALIAS:
        return err
    kind = err.partition(":")[0]
    kind = kind if kind.isidentifier() else "error"
    return f"loading the champion from the model registry failed ({kind}); the server log has the details"


@router.get("/health", response_model=Health, tags=["ops"])
async def health() -> Health:
    """Liveness: the process answers."""
    return Health(status="ok")


@router.get("/ready", response_model=Ready, responses={503: {"model": Ready}}, tags=["ops"])
def ready(request: Request, settings: SettingsDep) -> JSONResponse:
    """Readiness: 503 with the reasons until the champion, its feature version, the online store and
    the trading database are there."""
    reasons: list[str] = []
    scorer = request.app.state.scorer
    model = scorer.model if scorer else None
    if scorer is None:
        reasons.append(f"scorer unavailable: {request.app.state.scorer_error}")
    elif model is None:
        reasons.append(f"no champion model loaded ({reload_error(scorer) or 'loading'})")
    if model is not None:
        expected = request.app.state.feature_version
        if expected is not None and model.feature_version != expected:
            reasons.append(f"model feature version {model.feature_version} != served {expected}")
        elif expected is None and not request.app.state.known_feature_version(model.feature_version):
            reasons.append(f"feature version {model.feature_version} unknown to the feature code")
    try:
        request.app.state.ping_online_store()
    except STORE_DOWN as exc:
        reasons.append(f"online store unavailable: {type(exc).__name__}")
    try:
        request.app.state.ping_database()
    except (*STORE_DOWN, SQLAlchemyError) as exc:
        log.warning("trading database unavailable: %s: %s", type(exc).__name__, exc)
        reasons.append(f"trading database unavailable: {type(exc).__name__}")
    body = Ready(ready=not reasons, reasons=reasons, model_version=str(model.version) if model else None)
    return JSONResponse(body.model_dump(), status_code=200 if not reasons else 503)


@router.get("/metrics", tags=["ops"], response_class=Response)
def metrics(m: MetricsDep) -> Response:
    """Prometheus exposition."""
    return Response(generate_latest(m.exposition_registry()), media_type=CONTENT_TYPE_LATEST)


@router.get("/model", response_model=ModelInfo, responses=errors(503), tags=["model"])
def model(scorer: ScorerDep, request: Request) -> ModelInfo:
    """The model serving now, and the challenger this worker shadow-scores beside it."""
    current = scorer.model
    if current is None:
        raise ApiError(
            503, "model_unavailable", f"no champion model loaded ({reload_error(scorer) or 'loading'})"
        )
    challenger: Scorer | None = request.app.state.challenger
    shadow = challenger.model if challenger is not None else None
    info = _info(current)
    if shadow is not None and str(shadow.version) != info.version:
        info.shadow_version = str(shadow.version)
    return info


@router.post(
    "/model/reload",
    response_model=ReloadResponse,
    responses=errors(401, 503),
    dependencies=[ApiKeyDep],
    tags=["model"],
)
def reload_model(scorer: ScorerDep, m: MetricsDep) -> ReloadResponse:
    """Load the version the champion alias points at now (needs X-API-Key)."""
    swapped = scorer.reload_if_moved()
    current = scorer.model
    if swapped and current is not None:
        m.reloads.inc()
        m.set_model(current)
    return ReloadResponse(
        swapped=swapped, model=_info(current) if current else None, error=reload_error(scorer)
    )


@router.post(
    "/predict", response_model=PredictResponse, responses=errors(400, 404, 422, 503), tags=["predict"]
)
async def predict(req: PredictRequest, request: Request) -> Response:
    """Score the latest online feature vector of a symbol with the champion model."""
    # the hot path: the app's parts straight from its state (no dependency resolution per call),
    # the answer serialised once (the response model documents it; FastAPI would validate it again)
    t0 = time.perf_counter()
    state = request.app.state
    settings, scorer, clock = state.settings, state.scorer, state.clock
    if scorer is None:
        raise HTTPException(503, f"scorer unavailable: {state.scorer_error}")
    if req.symbol not in settings.symbols:
        raise ApiError(
            404, "unknown_symbol", f"unknown symbol {req.symbol}; served: {', '.join(settings.symbols)}"
        )
    try:
        # hot path on the event loop: one small Redis read when the row is unchanged; a new row
        # (read + model) goes to the thread pool so it never blocks other requests
        s = scorer.score_cached(req.symbol)
        if s is None:
            s = await run_in_threadpool(scorer.score, req.symbol)
    except UnknownSymbolError as exc:
        raise ApiError(404, "unknown_symbol", f"no online features for {exc.args[0]}") from exc
    except ModelUnavailableError as exc:
        raise ApiError(503, "model_unavailable", str(exc)) from exc
    except FeatureMismatchError as exc:
        raise ApiError(503, "feature_mismatch", f"online features do not fit the model: {exc}") from exc
    except STORE_DOWN as exc:
        raise ApiError(
            503, "online_store_unavailable", f"online store unavailable: {type(exc).__name__}"
        ) from exc
    body = PredictResponse(
        symbol=s.symbol,
        prob_up=s.prob_up,
        signal=signal_from_prob(s.prob_up, settings.buy_threshold, settings.sell_threshold).value,
        model_name=s.model_name,
        model_version=s.model_version,
        feature_version=s.feature_version,
        feature_time=s.feature_time,
        served_at=clock(),
        latency_ms=(time.perf_counter() - t0) * 1e3,
    )
    return Response(body.model_dump_json(), media_type="application/json")


@router.post(
    "/predict/batch", response_model=BatchResponse, responses=errors(400, 422, 503), tags=["predict"]
)
def predict_batch(req: BatchRequest, scorer: ScorerDep, settings: SettingsDep) -> BatchResponse:
    """Score explicit feature rows (no online store involved)."""
    t0 = time.perf_counter()
    try:
        used, probs = scorer.score_rows(req.rows)
    except ModelUnavailableError as exc:
        raise ApiError(503, "model_unavailable", str(exc)) from exc
    except FeatureMismatchError as exc:
        raise ApiError(422, "feature_mismatch", str(exc)) from exc
    return BatchResponse(
        model_name=used.name,
        model_version=str(used.version),
        feature_version=used.feature_version,
        prob_up=probs,
        signals=[signal_from_prob(p, settings.buy_threshold, settings.sell_threshold).value for p in probs],
        latency_ms=(time.perf_counter() - t0) * 1e3,
    )


def _bot_state(settings: SettingsDep, state: str, reason: str) -> BotState:
    from hft.storage.db import engine
    from hft.trading import store
    from hft.trading.bot import set_state
    from hft.trading.strategy import TradingState

    try:
        eng = engine(settings)
        if state:
            set_state(eng, TradingState(state), reason, "api")
        with eng.connect() as conn:
            st = store.get_bot_state(conn)
    except (OSError, TransientError, SQLAlchemyError) as exc:
        # the driver's message names the database host and port: the log has it, the client gets the kind
        log.warning("trading state unavailable: %s: %s", type(exc).__name__, exc)
        raise ApiError(
            503,
            "database_unavailable",
            f"trading state unavailable: the trading database failed "
            f"({type(exc).__name__}); the server log has the details",
        ) from exc
    return BotState(state=st.state.value, reason=st.reason, updated_by=st.updated_by)


@router.get("/bot", response_model=BotState, responses=errors(503), tags=["bot"])
def bot_state(settings: SettingsDep) -> BotState:
    """The trading bot's current state."""
    return _bot_state(settings, "", "")


@router.post(
    "/bot/halt",
    response_model=BotState,
    responses=errors(400, 401, 422, 503),
    dependencies=[ApiKeyDep],
    tags=["bot"],
)
def bot_halt(req: BotStateRequest, settings: SettingsDep) -> BotState:
    """Kill switch: the bot sends no new intent from now on (needs X-API-Key)."""
    return _bot_state(settings, "halted", req.reason)


@router.post(
    "/bot/resume",
    response_model=BotState,
    responses=errors(400, 401, 422, 503),
    dependencies=[ApiKeyDep],
    tags=["bot"],
)
def bot_resume(req: BotStateRequest, settings: SettingsDep) -> BotState:
    """Trade again after a halt (needs X-API-Key)."""
    return _bot_state(settings, "active", req.reason)
