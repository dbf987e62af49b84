"""``POST /predict`` answered from the cache by api/fast.py: the same answers as the route, and
everything it does not answer reaches the route untouched."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.app import create_app
from api.fast import FastPredict
from hft.config import Settings
from hft.trading.scoring import Scorer
from tests.unit.serving.conftest import T0, MemoryFeatures, fit_model

VOLATILE = {"served_at", "latency_ms"}


def _client(features: MemoryFeatures, fast: bool) -> TestClient:
    model = fit_model(feature_version="v-test")

    def probe(symbol: str) -> bytes | None:  # the row's token: its time, as Feast's timestamp is
        latest = features.latest(symbol)
        return latest[0].isoformat().encode() if latest else None

    scorer = Scorer(lambda: model, lambda: "1", features, features.history, probe=probe)
    settings = Settings(
        api_key=SecretStr("k3y"), model_poll_s=0.05, redis_url="redis://127.0.0.1:1/0", api_fast_path=fast
    )
    app = create_app(settings, scorer=scorer, feature_version="v-test")
    scorer.reload_if_moved()
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture
def answered(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether the fast path answered, per request it looked at."""
    seen: list[bool] = []
    original = FastPredict._answer

    def spy(self: FastPredict, *args: Any) -> bytes | None:
        out = original(self, *args)
        seen.append(out is not None)
        return out

    monkeypatch.setattr(FastPredict, "_answer", spy)
    return seen


@pytest.fixture
def pair(features: MemoryFeatures) -> Iterator[tuple[TestClient, TestClient]]:
    with _client(features, fast=True) as fast, _client(features, fast=False) as slow:
        yield fast, slow


def _stable(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in VOLATILE}


def test_a_cached_row_is_answered_by_the_fast_path_exactly_as_the_route_answers(
    pair: tuple[TestClient, TestClient], features: MemoryFeatures, answered: list[bool]
) -> None:
    fast, slow = pair
    first = fast.post("/predict", json={"symbol": "BTCUSDT"})  # a new row: the route scores it
    assert first.status_code == 200, first.text
    assert answered == [False]
    second = fast.post("/predict", json={"symbol": "BTCUSDT"})
    assert answered == [False, True]
    assert second.status_code == 200
    assert second.headers["content-type"] == "application/json"
    reference = slow.post("/predict", json={"symbol": "BTCUSDT"}).json()
    assert set(second.json()) == set(reference)
    assert _stable(second.json()) == _stable(first.json()) == _stable(reference)
    assert second.json()["latency_ms"] >= 0

    # a new row moves the token: the route scores it, then the fast path has it
    features.put("BTCUSDT", T0 + timedelta(hours=5), {"ret_1": -0.5, "ret_4": 0.0, "vol_16": 1.0})
    third = fast.post("/predict", json={"symbol": "BTCUSDT"})
    assert answered[-1] is False
    assert third.json()["feature_time"] != first.json()["feature_time"]
    fourth = fast.post("/predict", json={"symbol": "BTCUSDT"})
    assert answered[-1] is True
    assert _stable(fourth.json()) == _stable(third.json())

    # the latency histogram counts fast answers under the route's own label
    metrics = fast.get("/metrics").text
    line = next(
        ln
        for ln in metrics.splitlines()
        if ln.startswith("hft_api_request_seconds_count") and "/predict" in ln
    )
    assert 'route="/predict"' in line
    assert float(line.split()[-1]) == 4


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        ({"json": {"symbol": "btcusdt"}}, 200),  # the route uppercases it
        ({"json": {"symbol": "BTCUSDT", "extra": 1}}, 422),
        ({"json": {"symbol": "DOGEUSDT"}}, 404),
        ({"json": {"symbol": "ETHUSDT"}}, 404),  # served, no online row
        ({"json": ["BTCUSDT"]}, 422),
        ({"content": b'{"symbol": "BTCUSDT"', "headers": {"content-type": "application/json"}}, 422),
        ({"content": b'{"symbol": "BTCUSDT"}', "headers": {"content-type": "text/plain"}}, None),
    ],
)
def test_what_the_fast_path_does_not_answer_reaches_the_route_unchanged(
    pair: tuple[TestClient, TestClient], answered: list[bool], kwargs: dict[str, Any], status: int | None
) -> None:
    fast, slow = pair
    for c in (fast, slow):  # the row scored: a cached answer would be possible
        assert c.post("/predict", json={"symbol": "BTCUSDT"}).status_code == 200
    answered.clear()
    got, want = fast.post("/predict", **kwargs), slow.post("/predict", **kwargs)
    assert True not in answered
    assert got.status_code == want.status_code
    if status is not None:
        assert got.status_code == status, got.text
    if got.status_code == 200:
        assert _stable(got.json()) == _stable(want.json())
    else:
        assert got.json() == want.json()


def test_the_store_down_is_the_routes_503(
    pair: tuple[TestClient, TestClient], features: MemoryFeatures, answered: list[bool]
) -> None:
    fast, _slow = pair
    assert fast.post("/predict", json={"symbol": "BTCUSDT"}).status_code == 200
    features.down = True
    r = fast.post("/predict", json={"symbol": "BTCUSDT"})
    assert r.status_code == 503
    assert r.json()["error"] == "online_store_unavailable"
    assert answered[-1] is False
