"""The model server's limits and clean errors (issue 20): the body limit, reasons in words, no leaks.

- Bodies over ``api_max_body_bytes`` get 413 ``{error, reason}``: by Content-Length before the
  app reads anything, and for a streamed (chunked) body at the chunk that crosses the limit.
  Driven three ways: raw ASGI (to count what the app read), TestClient, and a real uvicorn on
  a loopback port.
- Error reasons never carry a driver's message, host or port (those go to the log).
- Broken JSON says what is wrong and where; a body that is not UTF-8 gets a 400 in words.
- Every status a route answers is in the OpenAPI spec.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr

import api.app
from api.app import create_app
from hft.config import Settings
from hft.features.spec import ALL_FEATURES
from hft.trading.scoring import Scorer
from tests.unit.serving.conftest import MemoryFeatures, fit_model

KEY = "k3y"
LIMIT = 4096
MB20 = 20 * 1024 * 1024
# a closed port and a password: neither may reach a client
DEAD_DB = "postgresql+psycopg://trader:s3cret-pw@127.0.0.1:9/market"
LEAKS = ("127.0.0.1", ":9", "s3cret", "psycopg", "refused", "sqlalche.me", "trader@")


def _settings(**kw: Any) -> Settings:
    base: dict[str, Any] = {
        "api_key": SecretStr(KEY),
        "model_poll_s": 0.05,
        "redis_url": "redis://127.0.0.1:1/0",
        "postgres_url": DEAD_DB,
        "api_max_body_bytes": LIMIT,
    }
    return Settings(**{**base, **kw})


def _app(features: MemoryFeatures, **kw: Any) -> tuple[FastAPI, Scorer]:
    model = fit_model(feature_version="v-test")
    scorer = Scorer(lambda: model, lambda: "1", features, features.history)
    scorer.reload_if_moved()
    return create_app(_settings(**kw), scorer=scorer, feature_version="v-test"), scorer


@pytest.fixture
def app(features: MemoryFeatures) -> FastAPI:
    return _app(features)[0]


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def _no_leak(text: str) -> None:
    for leak in LEAKS:
        assert leak not in text, f"{leak!r} leaked into {text!r}"


# --- the body limit -------------------------------------------------------------------------


def _asgi_post(
    app: FastAPI, path: str, chunks: list[bytes], headers: list[tuple[bytes, bytes]]
) -> tuple[int, dict[str, Any], int]:
    """POST through the raw ASGI interface; return (status, JSON body, how many chunks the app read)."""
    read = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal read
        if read < len(chunks):
            read += 1
            return {"type": "http.request", "body": chunks[read - 1], "more_body": read < len(chunks)}
        await asyncio.sleep(3600)  # a client that sends nothing more (never reached: the app stops reading)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver"), (b"content-type", b"application/json"), *headers],
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
    }
    asyncio.run(asyncio.wait_for(app(scope, receive, send), timeout=30))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, json.loads(body), read


@pytest.mark.parametrize("path", ["/bot/halt", "/predict", "/predict/batch", "/model/reload", "/health"])
def test_declared_length_over_the_limit_is_413_before_anything_is_read(app: FastAPI, path: str) -> None:
    chunks = [b"x" * 65536] * (MB20 // 65536)
    status, body, read = _asgi_post(app, path, chunks, [(b"content-length", str(MB20).encode())])
    assert status == 413
    assert body == {"error": "payload_too_large", "reason": f"request body larger than {LIMIT} bytes"}
    assert read == 0  # refused from the header alone: not one chunk was taken from the client


@pytest.mark.parametrize("path", ["/bot/halt", "/predict"])
def test_streamed_body_is_refused_at_the_chunk_that_crosses_the_limit(app: FastAPI, path: str) -> None:
    chunk = 1000
    chunks = [b"x" * chunk] * (MB20 // chunk)  # 20 MB, no Content-Length (chunked)
    status, body, read = _asgi_post(app, path, chunks, [])
    assert status == 413, body
    assert body["error"] == "payload_too_large"
    assert read == LIMIT // chunk + 1  # 5 KB of 20 MB read: the rest never left the client


def test_keyed_route_refuses_20_mb_without_parsing_it(client: TestClient) -> None:
    big = b'{"reason": "' + b"x" * MB20 + b'"}'
    for headers in ({}, {"X-API-Key": KEY}):  # 413 comes first, with or without the key
        r = client.post("/bot/halt", content=big, headers={"content-type": "application/json", **headers})
        assert r.status_code == 413
        assert r.json() == {"error": "payload_too_large", "reason": f"request body larger than {LIMIT} bytes"}


def test_chunked_body_through_testclient_is_413(client: TestClient) -> None:
    def stream() -> Iterator[bytes]:
        yield b'{"symbol": "BTCUSDT", "pad": "'
        for _ in range(100):
            yield b"y" * 1000
        yield b'"}'

    r = client.post("/predict", content=stream(), headers={"content-type": "application/json"})
    assert r.request.headers.get("transfer-encoding") == "chunked"
    assert r.status_code == 413
    assert r.json()["error"] == "payload_too_large"


def test_body_at_the_limit_passes_and_one_byte_more_does_not(client: TestClient) -> None:
    payload = b'{"symbol": "BTCUSDT"}'
    exact = payload[:-1] + b" " * (LIMIT - len(payload)) + b"}"
    assert len(exact) == LIMIT
    r = client.post("/predict", content=exact, headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    over = client.post("/predict", content=exact + b" ", headers={"content-type": "application/json"})
    assert over.status_code == 413


def test_the_largest_batch_fits_under_the_default_limit(features: MemoryFeatures) -> None:
    app, _ = _app(features, api_max_body_bytes=Settings.model_fields["api_max_body_bytes"].default)
    row = dict.fromkeys(ALL_FEATURES, -0.012345678901234567)
    body = json.dumps({"rows": [row] * 1000}, indent=2).encode()  # 1000 rows is the schema's maximum
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.post("/predict/batch", content=body, headers={"content-type": "application/json"})
    assert r.status_code != 413, f"a full batch of {len(body)} bytes is refused by the default limit"


def test_refused_bodies_are_counted_in_the_error_metric(client: TestClient) -> None:
    client.post("/predict", content=b"x" * (LIMIT + 1), headers={"content-type": "application/json"})
    client.post("/predict", content=iter([b"x" * (LIMIT + 1)]), headers={"content-type": "application/json"})
    assert 'hft_api_errors_total{kind="payload_too_large"} 2.0' in client.get("/metrics").text


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def live(app: FastAPI) -> Iterator[str]:
    """The app on a real uvicorn (loopback, free port), as ``hft run api`` serves it."""
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def test_real_server_answers_413_to_20_mb_with_and_without_content_length(live: str) -> None:
    with httpx.Client(base_url=live, timeout=30) as c:
        r = c.post("/bot/halt", content=b"z" * MB20, headers={"content-type": "application/json"})
        assert r.status_code == 413
        assert r.json()["reason"] == f"request body larger than {LIMIT} bytes"

        def stream() -> Iterator[bytes]:
            for _ in range(MB20 // 65536):
                yield b"z" * 65536

        r = c.post(
            "/bot/halt", content=stream(), headers={"content-type": "application/json", "X-API-Key": KEY}
        )
        assert r.status_code == 413
        assert r.json()["error"] == "payload_too_large"
        # the connection and the server are fine afterwards
        assert c.get("/health").json() == {"status": "ok"}


# --- reasons in words, no driver messages ----------------------------------------------------


def test_database_down_names_no_host_port_or_driver(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="api"):
        r = client.get("/bot")
        halted = client.post("/bot/halt", json={"reason": "x"}, headers={"X-API-Key": KEY})
    for resp in (r, halted):
        assert resp.status_code == 503
        body = resp.json()
        assert set(body) == {"error", "reason"}
        assert body["error"] == "database_unavailable"
        assert body["reason"].startswith(
            "trading state unavailable: the trading database failed (OperationalError)"
        )
        _no_leak(resp.text)
    assert "127.0.0.1" in caplog.text  # the detail is in the log, for the operator


def test_scorer_that_cannot_be_built_names_no_host(
    features: MemoryFeatures, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(settings: Settings) -> Scorer:
        raise ConnectionError("Error 111 connecting to 127.0.0.1:9. Connection refused.")

    monkeypatch.setattr(api.app, "_build_scorer", broken)
    app = create_app(_settings(), feature_version="v-test")
    with caplog.at_level(logging.ERROR, logger="api"), TestClient(app, raise_server_exceptions=False) as c:
        deadline = time.monotonic() + 10
        while app.state.scorer_error == "starting" and time.monotonic() < deadline:
            time.sleep(0.02)
        ready = c.get("/ready")
        predict = c.post("/predict", json={"symbol": "BTCUSDT"})
        model = c.get("/model")
    assert ready.status_code == predict.status_code == model.status_code == 503
    assert "scorer unavailable: it could not be built (ConnectionError)" in ready.json()["reasons"][0]
    assert predict.json()["reason"].startswith("scorer unavailable: it could not be built (ConnectionError)")
    for resp in (ready, predict, model):
        _no_leak(resp.text)
    assert "127.0.0.1:9" in caplog.text


def test_failed_model_load_names_no_host(features: MemoryFeatures) -> None:
    def load() -> Any:
        raise OSError(
            "HTTPConnectionPool(host='127.0.0.1', port=9): Max retries exceeded (Connection refused)"
        )

    scorer = Scorer(load, lambda: "1", features, features.history)
    app = create_app(_settings(), scorer=scorer, feature_version="v-test")
    with TestClient(app, raise_server_exceptions=False) as c:
        reload = c.post("/model/reload", headers={"X-API-Key": KEY})
        model = c.get("/model")
        ready = c.get("/ready")
    assert reload.status_code == 200
    assert reload.json()["error"].startswith("loading the champion from the model registry failed (OSError)")
    assert model.status_code == ready.status_code == 503
    assert "(OSError)" in model.json()["reason"]
    for resp in (reload, model, ready):
        _no_leak(resp.text)


# --- broken bodies ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"symbol": }', "request body is not valid JSON: Expecting value at line 1 column 12"),
        (
            b'{\n  "symbol":\n    "BTCUSDT"',
            "request body is not valid JSON: Expecting ',' delimiter at line 3 column 14",
        ),
        (
            b"{not json",
            "request body is not valid JSON: Expecting property name enclosed in double quotes at line 1 column 2",
        ),
        (b'{"symbol": "BTCUSDT"} x', "request body is not valid JSON: Extra data at line 1 column 23"),
    ],
)
def test_malformed_json_says_what_and_where(client: TestClient, body: bytes, reason: str) -> None:
    r = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert r.json() == {"error": "invalid_request", "reason": reason}


def test_body_that_is_not_utf8_is_400_in_words(client: TestClient) -> None:
    r = client.post(
        "/predict",
        content='{"symbol": "BTCUSDT", "x": "é"}'.encode("latin-1"),
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 400
    assert r.json() == {
        "error": "bad_request",
        "reason": "request body is not UTF-8 text: byte 0xe9 at offset 28 cannot be decoded as utf-8",
    }
    assert 'hft_api_errors_total{kind="bad_request"} 1.0' in client.get("/metrics").text


# --- the spec lists what the routes answer ---------------------------------------------------


def test_every_status_a_route_answers_is_in_the_openapi_spec(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    bodies = [
        b"",
        b"{}",
        b'{"symbol": "BTCUSDT", "reason": "spec"}',
        b'{"symbol": "DOGEUSDT"}',
        b'{"rows": [{"ret_1": 1.0}]}',
        b"{not json",
        b'{"x": "\xe9"}',
        b"\xff\xfe{\x00}\x00",
        b"[" * 3000,
        b"x" * (LIMIT + 1),
    ]
    seen: dict[tuple[str, str], set[int]] = {}
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            listed = {int(s) for s in op["responses"]}
            assert 413 in listed, f"{method} {path} lacks 413"
            for body, streamed in [(b, False) for b in bodies] + [(b"x" * (LIMIT + 1), True)]:
                for key in ({}, {"X-API-Key": "wrong"}, {"X-API-Key": KEY}):
                    r = client.request(
                        method.upper(),
                        path,
                        content=iter([body]) if streamed else body,
                        headers={"content-type": "application/json", **key},
                    )
                    seen.setdefault((method, path), set()).add(r.status_code)
                    assert r.status_code in listed, (
                        f"{method} {path} answered {r.status_code}: {r.text[:200]}"
                    )
                    if r.status_code >= 400:
                        assert set(r.json()) in ({"error", "reason"}, {"ready", "reasons", "model_version"})
                        _no_leak(r.text)
    assert {400, 401, 413, 422, 503} <= seen[("post", "/bot/halt")]
    assert {400, 404, 413, 422} <= seen[("post", "/predict")]


# --- offline docs ----------------------------------------------------------------------------


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_only_local_assets_that_answer(client: TestClient, page: str) -> None:
    r = client.get(page)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    html = r.text
    for outside in ("http://", "https://", "//cdn"):  # nothing loaded from outside
        assert outside not in html
    urls = re.findall(r'(?:src|href|spec-url)="([^"]+)"', html) + re.findall(r"url: '([^']+)'", html)
    scripts = [u for u in urls if u.endswith(".js")]
    assert scripts, html
    for url in urls:
        assert url.startswith("/"), url
        assert not url.startswith("//"), url
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 100, url
    for url in scripts:
        assert "javascript" in client.get(url).headers["content-type"]


def test_docs_routes_stay_out_of_the_spec(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert not {"/docs", "/redoc"} & set(paths)
    assert not any(p.startswith("/docs-static") for p in paths)
