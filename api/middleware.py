"""Pure ASGI middleware of the model server: the request-body limit.

Pure ASGI rather than ``BaseHTTPMiddleware``: it sees the body as the chunks the server hands
on, so it can refuse a body before it is read in full, and it adds nothing to the hot path but
one header scan.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

TOO_LARGE_KIND = "payload_too_large"


class BodyTooLargeError(StarletteHTTPException):
    """The body grew past the limit while the app read it (answered 413 by the app's handler)."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, too_large_reason(max_bytes))


def too_large_reason(max_bytes: int) -> str:
    """The 413 reason, in words."""
    return f"request body larger than {max_bytes} bytes"


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


class BodyLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` with 413 ``{error, reason}`` before they are read in full.

    A declared ``Content-Length`` over the limit is answered at once, without calling the app
    (the server discards whatever the client still sends). A body without one (chunked) is
    counted as the app reads it: the chunk that crosses the limit raises
    :class:`BodyTooLargeError` instead of being handed on, so at most ``max_bytes`` plus one
    chunk is ever held, and FastAPI never parses it (its handler answers 413).
    """

    def __init__(self, app: ASGIApp, max_bytes: int, on_reject: Callable[[], None] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.on_reject = on_reject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            if self.on_reject is not None:
                self.on_reject()
            body = {"error": TOO_LARGE_KIND, "reason": too_large_reason(self.max_bytes)}
            await JSONResponse(body, status_code=413)(scope, receive, send)
            return
        # counted even under a declared length: the limit must not rest on the server's framing
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLargeError(self.max_bytes)
            return message

        await self.app(scope, counted, send)
