"""The model server's routes: JSON errors with reasons, API key, readiness, metrics."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.app import create_app
from hft.config import Settings
from hft.trading.scoring import Scorer
from tests.unit.serving.conftest import MemoryFeatures, fit_model


@pytest.fixture
def client(features: MemoryFeatures) -> Iterator[TestClient]:
    model = fit_model(feature_version="v-test")
    scorer = Scorer(lambda: model, lambda: "1", features, features.history)
    settings = Settings(api_key=SecretStr("k3y"), model_poll_s=0.05, redis_url="redis://127.0.0.1:1/0")
    app = create_app(settings, scorer=scorer, feature_version="v-test")
    with TestClient(app, raise_server_exceptions=False) as c:
        scorer.reload_if_moved()
        yield c


def test_predict_returns_the_contract(client: TestClient) -> None:
    r = client.post("/predict", json={"symbol": "btcusdt"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {
        "symbol",
        "prob_up",
        "signal",
        "model_name",
        "model_version",
        "feature_version",
        "feature_time",
        "served_at",
        "latency_ms",
    }
    assert body["symbol"] == "BTCUSDT"
    assert 0.0 <= body["prob_up"] <= 1.0
    assert body["signal"] in {"buy", "sell", "hold"}


@pytest.mark.parametrize("payload", [{}, {"symbol": ""}, {"symbol": "BTC/USDT"}, {"symbol": 3}, {"sym": "x"}])
def test_bad_input_is_422_with_reason(client: TestClient, payload: dict[str, object]) -> None:
    r = client.post("/predict", json=payload)
    assert r.status_code == 422
    assert r.json()["error"] == "invalid_request"
    assert r.json()["reason"]


def test_malformed_json_is_422(client: TestClient) -> None:
    r = client.post("/predict", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert "Traceback" not in r.text


def test_unknown_symbol_is_404(client: TestClient) -> None:
    r = client.post("/predict", json={"symbol": "DOGEUSDT"})
    assert r.status_code == 404
    assert r.json()["error"] == "unknown_symbol"


def test_configured_symbol_without_features_is_404(client: TestClient) -> None:
    r = client.post("/predict", json={"symbol": "ETHUSDT"})
    assert r.status_code == 404
    assert "no online features" in r.json()["reason"]


def test_store_down_is_503(client: TestClient, features: MemoryFeatures) -> None:
    features.down = True
    r = client.post("/predict", json={"symbol": "BTCUSDT"})
    assert r.status_code == 503
    assert r.json()["error"] == "online_store_unavailable"
    features.down = False
    assert client.post("/predict", json={"symbol": "BTCUSDT"}).status_code == 200


def test_ready_names_the_missing_store(client: TestClient) -> None:
    r = client.get("/ready")  # redis_url points at a closed port
    assert r.status_code == 503
    assert any("online store" in reason for reason in r.json()["reasons"])


def test_ready_names_a_trading_database_that_is_down_without_its_address(features: MemoryFeatures) -> None:
    """/ready covers every dependency the API needs: the bot's state lives in the trading database."""
    model = fit_model(feature_version="v-test")
    scorer = Scorer(lambda: model, lambda: "1", features, features.history)
    settings = Settings(
        api_key=SecretStr("k3y"),
        redis_url="redis://127.0.0.1:1/0",
        postgres_url="postgresql+psycopg://trader:pw-4711@127.0.0.1:9/market",  # nothing listens on :9
    )
    with TestClient(create_app(settings, scorer=scorer, feature_version="v-test")) as c:
        scorer.reload_if_moved()
        r = c.get("/ready")
    assert r.status_code == 503
    reasons = r.json()["reasons"]
    assert any(reason.startswith("trading database unavailable") for reason in reasons), reasons
    assert "pw-4711" not in r.text
    assert "127.0.0.1:9" not in r.text


def test_reload_needs_the_api_key(client: TestClient) -> None:
    assert client.post("/model/reload").status_code == 401
    assert client.post("/model/reload", headers={"X-API-Key": "wrong"}).status_code == 401
    r = client.post("/model/reload", headers={"X-API-Key": "k3y"})
    assert r.status_code == 200
    assert r.json()["model"]["version"] == "1"


def test_batch_scores_rows_and_rejects_nan(client: TestClient) -> None:
    rows = [{"ret_1": 0.1, "ret_4": 0.0, "vol_16": 1.0}, {"ret_1": -0.1, "ret_4": 0.0, "vol_16": 1.0}]
    r = client.post("/predict/batch", json={"rows": rows})
    assert r.status_code == 200
    assert len(r.json()["prob_up"]) == 2
    bad = client.post(
        "/predict/batch", content=b'{"rows": [{"ret_1": NaN}]}', headers={"content-type": "application/json"}
    )
    assert bad.status_code == 422
    missing = client.post("/predict/batch", json={"rows": [{"ret_1": 0.1}]})
    assert missing.status_code == 422
    assert missing.json()["error"] == "feature_mismatch"


def test_metrics_expose_latency_errors_and_version(client: TestClient) -> None:
    client.post("/predict", json={"symbol": "BTCUSDT"})
    client.post("/predict", json={"symbol": "DOGEUSDT"})
    text = client.get("/metrics").text
    assert 'hft_api_request_seconds_bucket{le="0.003",method="POST",route="/predict"}' in text
    assert 'hft_api_errors_total{kind="unknown_symbol"} 1.0' in text
    assert "hft_api_model_version" in text


def test_unknown_route_is_json_404(client: TestClient) -> None:
    r = client.get("/nope")
    assert r.status_code == 404
    assert r.json()["error"] == "not_found"


def test_model_names_the_challenger_it_shadow_scores(features: MemoryFeatures) -> None:
    champion = fit_model(feature_version="v-test")
    challenger = fit_model(seed=1, feature_version="v-test", version="2")
    scorer = Scorer(lambda: champion, lambda: "1", features, features.history)
    shadow = Scorer(lambda: challenger, lambda: "2", features, features.history)
    settings = Settings(model_poll_s=0.05, redis_url="redis://127.0.0.1:1/0")
    app = create_app(settings, scorer=scorer, feature_version="v-test", challenger=shadow)
    with TestClient(app, raise_server_exceptions=False) as c:
        scorer.reload_if_moved()
        shadow.reload_if_moved()  # (the poll loop reloads it too)
        info = c.get("/model").json()
        assert (info["version"], info["shadow_version"]) == ("1", "2")
        # a challenger alias on the champion's own version is no shadow
        challenger.version = "1"
        assert c.get("/model").json()["shadow_version"] is None
