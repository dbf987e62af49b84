"""The cached answer of ``POST /predict`` without the framework's per-request work.

Most requests for a symbol ask about a row that has already been scored (the API's predict-ahead
scored it when the bar closed). For them FastAPI's routing, its request object, the body model's
validation and the response model are most of the server's CPU (docs/serving.md, the profiles).
This pure ASGI layer, inside the body limit and the latency middleware, answers exactly those
requests itself: a JSON body that is ``{"symbol": S}`` with ``S`` a served symbol, as
``PredictRequest`` would accept it unchanged, and a cached score (``Scorer.score_cached``). The
answer is the same ``PredictResponse`` JSON. Everything else (another body, a symbol to
uppercase, an unknown one, no cached score, any error) goes on to the FastAPI route untouched,
with the body handed on as it came, so validation, the 422/404/503 reasons and the OpenAPI entry
stay the route's.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.schemas import PredictResponse
from hft.trading.strategy import signal_from_prob

log = logging.getLogger("api")

PATH = "/predict"
MAX_FAST_BODY = 256  # {"symbol": "..."} is ~25 bytes; larger or chunked bodies take the route
_JSON = (b"content-type", b"application/json")


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


def _is_json(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            return bool(value.split(b";", 1)[0].strip().lower() == b"application/json")
    return False


class FastPredict:
    """Answer ``POST /predict`` from the scorer's cache; hand everything else to ``app``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._route: Any = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        declared = _declared_length(scope)
        if declared is None or declared > MAX_FAST_BODY or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        body = b""
        first: Message | None = None
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: let the route see it
                first = message
                break
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        answer = None if first is not None else self._answer(scope, body, t0)
        if answer is None:
            await self.app(scope, _replay(body, first, receive), send)
            return
        scope["route"] = self._predict_route(scope)  # the latency histogram's label, as the route's
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [_JSON, (b"content-length", str(len(answer)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": answer})

    def _answer(self, scope: Scope, body: bytes, t0: float) -> bytes | None:
        try:
            data = json.loads(body)
        except ValueError:
            return None
        if type(data) is not dict or len(data) != 1:
            return None
        symbol = data.get("symbol")
        state = scope["app"].state
        settings, scorer = state.settings, state.scorer
        if type(symbol) is not str or symbol not in settings.symbols or scorer is None:
            return None
        try:
            s = scorer.score_cached(symbol)
        except Exception as exc:  # Redis down, ...: the route answers with the reason
            log.debug("fast /predict: %s: %s", type(exc).__name__, exc)
            return None
        if s is None:
            return None
        return (
            PredictResponse.model_construct(
                symbol=s.symbol,
                prob_up=s.prob_up,
                signal=signal_from_prob(s.prob_up, settings.buy_threshold, settings.sell_threshold).value,
                model_name=s.model_name,
                model_version=s.model_version,
                feature_version=s.feature_version,
                feature_time=s.feature_time,
                served_at=state.clock(),
                latency_ms=(time.perf_counter() - t0) * 1e3,
            )
            .model_dump_json()
            .encode()
        )

    def _predict_route(self, scope: Scope) -> Any:
        if self._route is None:
            self._route = next(
                (
                    r
                    for r in scope["app"].router.routes
                    if getattr(r, "path", None) == PATH and "POST" in getattr(r, "methods", ())
                ),
                None,
            )
        return self._route


def _replay(body: bytes, first: Message | None, receive: Receive) -> Receive:
    """A receive that hands on what was read (the body, or the disconnect), then the rest."""
    pending: list[Message] = (
        [first] if first is not None else [{"type": "http.request", "body": body, "more_body": False}]
    )
    if first is not None and body:
        pending.insert(0, {"type": "http.request", "body": body, "more_body": True})

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay
