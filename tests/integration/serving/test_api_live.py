"""The model server on the real stack: real ensemble from MLflow, features from Redis (Feast layout).

Covers readiness, /predict, 401 without the key, schemathesis (no 5xx), hot reload under load
with zero failed requests, and a Redis outage (503, then recovery). The outage test restarts
Redis, so it runs last in this module.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from hft.config import Settings
from hft.devstack.host import child_env
from tests.integration.serving.conftest import API_KEY, TEST_MODEL

pytestmark = pytest.mark.integration


def test_ready_model_and_predict_from_online_features(
    api_server: str, registered_model: dict[str, str], online_rows: Any
) -> None:
    ready = httpx.get(f"{api_server}/ready").json()
    assert ready == {"ready": True, "reasons": [], "model_version": registered_model["v1"]}
    model = httpx.get(f"{api_server}/model").json()
    assert model["name"] == TEST_MODEL
    assert model["feature_version"] == "bar_features_ohlcv_v1"
    r = httpx.post(f"{api_server}/predict", json={"symbol": "BTCUSDT"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert 0.0 < body["prob_up"] < 1.0
    assert body["model_version"] == registered_model["v1"]
    assert body["feature_time"].startswith(online_rows["feature_time"].isoformat()[:19])
    assert body["signal"] in {"buy", "sell", "hold"}


def test_unknown_symbol_404_and_bad_input_422(api_server: str) -> None:
    assert httpx.post(f"{api_server}/predict", json={"symbol": "DOGEUSDT"}).status_code == 404
    no_features = httpx.post(f"{api_server}/predict", json={"symbol": "SOLUSDT"})  # configured, no features
    assert no_features.status_code == 404
    bad = httpx.post(f"{api_server}/predict", json={"symbol": ["x"]})
    assert bad.status_code == 422
    assert set(bad.json()) == {"error", "reason"}


def test_mutating_endpoint_without_key_is_401(api_server: str) -> None:
    assert httpx.post(f"{api_server}/model/reload").status_code == 401
    assert httpx.post(f"{api_server}/model/reload", headers={"X-API-Key": "nope"}).status_code == 401
    assert httpx.post(f"{api_server}/model/reload", headers={"X-API-Key": API_KEY}).status_code == 200


def test_bot_kill_switch_over_the_api_needs_the_key_and_is_stored(api_server: str) -> None:
    assert httpx.post(f"{api_server}/bot/halt", json={"reason": "x"}).status_code == 401
    halted = httpx.post(f"{api_server}/bot/halt", json={"reason": "api test"}, headers={"X-API-Key": API_KEY})
    assert halted.status_code == 200, halted.text
    assert halted.json()["state"] == "halted"
    assert httpx.get(f"{api_server}/bot").json() == {
        "state": "halted",
        "reason": "api test",
        "updated_by": "api",
    }
    resumed = httpx.post(
        f"{api_server}/bot/resume", json={"reason": "api test done"}, headers={"X-API-Key": API_KEY}
    )
    assert resumed.json()["state"] == "active"


def test_schemathesis_finds_no_server_error(api_server: str, stack_settings: Settings) -> None:
    st = Path(sys.executable).with_name("schemathesis")
    out = subprocess.run(
        [
            str(st),
            "run",
            f"{api_server}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "25",
            "--phases",
            "examples,fuzzing",
            "--no-color",
            "--seed",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=stack_settings.home_dir,
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "/predict" in out.stdout


def test_alias_move_switches_version_with_zero_failed_requests(
    api_server: str, registered_model: dict[str, str], serving_settings: Settings
) -> None:
    from hft.ml.registry import set_alias

    statuses: Counter[int] = Counter()
    versions: list[tuple[float, str]] = []
    stop = threading.Event()

    def load(fresh: bool) -> None:
        # keep-alive connections stay with one worker; new ones spread over the workers
        with httpx.Client(base_url=api_server, timeout=5) as c:
            while not stop.is_set():
                if fresh:
                    r = httpx.post(f"{api_server}/predict", json={"symbol": "BTCUSDT"}, timeout=5)
                else:
                    r = c.post("/predict", json={"symbol": "BTCUSDT"})
                statuses[r.status_code] += 1
                if r.status_code == 200:
                    versions.append((time.monotonic(), r.json()["model_version"]))

    workers = [threading.Thread(target=load, args=(i == 0,)) for i in range(3)]
    for w in workers:
        w.start()
    try:
        time.sleep(1.0)
        set_alias(serving_settings, TEST_MODEL, "champion", registered_model["v2"])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (not versions or versions[-1][1] != registered_model["v2"]):
            time.sleep(0.2)
        time.sleep(2.0)
        stop.set()
        metrics = httpx.get(f"{api_server}/metrics").text
        shown = [ln for ln in metrics.splitlines() if ln.startswith("hft_api_model_version")]
    finally:
        stop.set()
        for w in workers:
            w.join()
        set_alias(serving_settings, TEST_MODEL, "champion", registered_model["v1"])
        _settle_on(api_server, registered_model["v1"])
    assert set(statuses) == {200}, statuses
    assert versions[0][1] == registered_model["v1"]
    assert versions[-1][1] == registered_model["v2"]
    # each worker swaps in one step when its poll sees the alias moved (every model_poll_s, 0.5 s
    # here), so v1 may answer from another worker only until that worker's next poll and load
    first_v2 = next(t for t, v in versions if v == registered_model["v2"])
    last_v1 = max(t for t, v in versions if v == registered_model["v1"])
    assert last_v1 - first_v2 < 10.0, (last_v1 - first_v2, statuses)
    tail = [v for t, v in versions if t > last_v1]
    assert tail, "no answer after the last v1"
    assert set(tail) == {registered_model["v2"]}
    # scraped while v2 was champion (before the alias went back to v1)
    assert f'hft_api_model_version{{model_name="{TEST_MODEL}"}} {float(registered_model["v2"])}' in shown, (
        shown
    )


def _settle_on(api_server: str, version: str, timeout: float = 60.0) -> None:
    """Wait until every worker serves ``version`` (each follows the alias at its own poll): 20 new
    connections per worker in a row answer it, so the next test starts from one model."""
    from tests.integration.serving.conftest import API_WORKERS

    deadline, in_a_row = time.monotonic() + timeout, 0
    while in_a_row < 20 * API_WORKERS:
        assert time.monotonic() < deadline, (
            f"the workers did not all serve version {version} in {timeout:.0f}s"
        )
        r = httpx.post(f"{api_server}/predict", json={"symbol": "BTCUSDT"}, timeout=10)
        in_a_row = in_a_row + 1 if r.status_code == 200 and r.json()["model_version"] == version else 0
        if not in_a_row:
            time.sleep(0.2)


@pytest.mark.faults
def test_a_closed_bar_is_scored_when_announced_before_anyone_asks(
    api_server: str, online_rows: Any, serving_settings: Settings
) -> None:
    """Predict ahead, once: the API reads the calculator's announcements (``hft:bars:closed``),
    scores the bar then and announces the score (``hft:bars:scored``); a request finds it cached."""
    from datetime import timedelta

    import redis

    from hft.features.calculator import CLOSED_STREAM
    from hft.features.online import OnlineFeatures, OnlineWriter
    from hft.trading.scoring import SCORED_STREAM

    s = serving_settings

    def scored_ahead() -> float:
        text = httpx.get(f"{api_server}/metrics", timeout=10).text
        prefix = 'hft_api_predicted_ahead_total{outcome="scored"}'
        return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(prefix))

    before = scored_ahead()
    latest = OnlineFeatures(s).latest("BTCUSDT")
    assert latest is not None
    feature_time = online_rows["feature_time"] + timedelta(minutes=15)
    OnlineWriter(s).write(
        "BTCUSDT", feature_time, latest[1]
    )  # the next bar's row, as the calculator writes it
    ns = int(feature_time.timestamp() * 1e9)
    client = redis.Redis.from_url(s.redis_dsn)
    scored_ids: list[bytes] = []
    published = time.time_ns()
    announced = client.xadd(
        CLOSED_STREAM,
        {
            "symbol": "BTCUSDT",
            "interval": s.bar_interval,
            "open_time_ns": ns - 15 * 60 * 10**9,
            "feature_time_ns": ns,
            "close": "61000.5",
            "close_receive_time_ns": time.time_ns(),
            "published_ns": published,
            "has_features": 1,
        },
    )
    try:
        deadline = time.monotonic() + 15
        while scored_ahead() <= before:
            assert time.monotonic() < deadline, "the announced bar was not scored ahead within 15 s"
            time.sleep(0.05)
        r = httpx.post(f"{api_server}/predict", json={"symbol": "BTCUSDT"}, timeout=10)
        assert r.status_code == 200, r.text
        assert r.json()["feature_time"].startswith(feature_time.isoformat()[:19])
        # ... and announced with the bar's own fields, for the bot to decide on without asking
        entries = client.xrevrange(SCORED_STREAM, count=50)
        # this announcement's (its published_ns): the bar itself may have been announced by earlier runs
        ours = str(published).encode()
        mine = [f for _id, f in entries if f.get(b"published_ns") == ours]
        assert len(mine) == 1, f"{len(mine)} scored entries for the announcement in {entries!r}"
        scored_ids.extend(i for i, f in entries if f.get(b"published_ns") == ours)
        fields = mine[0]
        assert fields[b"close"] == b"61000.5"
        assert fields[b"symbol"] == b"BTCUSDT"
        assert float(fields[b"prob_up"]) == pytest.approx(r.json()["prob_up"], abs=1e-12)
        assert fields[b"model_version"].decode() == r.json()["model_version"]
        assert int(fields[b"scored_ns"]) >= int(fields[b"published_ns"])
    finally:
        # Feast never overwrites a row with an older one, and Redis keeps its data (AOF): drop the
        # row this test made so the module's own row is the latest again
        _drop_online_row(s, "BTCUSDT")
        online_rows["write_latest"]()
        client.xdel(CLOSED_STREAM, announced)  # no bot should act on it
        if scored_ids:
            client.xdel(SCORED_STREAM, *scored_ids)


def _drop_online_row(settings: Settings, symbol: str) -> None:
    from hft.features.online import OnlineFeatures

    features = OnlineFeatures(settings)
    key = features.online._generate_redis_keys_for_entities(features.config, [features._key(symbol)])[0]
    features.online._get_client(features.config.online_store).delete(key)


def test_redis_down_predict_503_then_recovers(
    api_server: str, online_rows: Any, stack_settings: Settings
) -> None:
    from hft.devstack.stack import Stack

    st = Stack(stack_settings)
    st.redis.stop()
    try:
        r = httpx.post(f"{api_server}/predict", json={"symbol": "BTCUSDT"}, timeout=10)
        assert r.status_code == 503
        assert r.json()["error"] == "online_store_unavailable"
        ready = httpx.get(f"{api_server}/ready", timeout=10)
        assert ready.status_code == 503
        assert any("online store" in reason for reason in ready.json()["reasons"])
    finally:
        st.redis.start()
    online_rows["write_latest"]()  # the embedded Redis keeps no data across restarts; the calculator rewrites
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        r = httpx.post(f"{api_server}/predict", json={"symbol": "BTCUSDT"}, timeout=10)
        if r.status_code == 200:
            break
        time.sleep(0.2)
    assert r.status_code == 200, r.text


def test_metrics_count_every_workers_requests(api_server: str) -> None:
    """With several workers (``API_WORKERS``) a scrape reaches one of them, yet ``/metrics`` counts
    the requests all of them answered (prometheus_client's multiprocess files)."""
    from tests.integration.serving.conftest import API_WORKERS

    def predicted() -> float:
        text = httpx.get(f"{api_server}/metrics", timeout=10).text
        return sum(
            float(line.split()[-1])
            for line in text.splitlines()
            if line.startswith("hft_api_request_seconds_count{")
            and 'route="/predict"' in line
            and 'method="POST"' in line
        )

    before = predicted()
    n = 60
    for _ in range(n):  # a new connection each: the kernel hands them to the workers in turn
        assert httpx.post(f"{api_server}/predict", json={"symbol": "BTCUSDT"}, timeout=10).status_code == 200
    counts = {predicted() for _ in range(4 * API_WORKERS)}  # scrapes that reach different workers
    assert counts == {before + n}, (before, counts)


@pytest.mark.slow
def test_champion_and_challenger_are_both_recorded_live_and_judged_on_the_same_bars(
    api_server: str, online_rows: Any, serving_settings: Settings, registered_model: dict[str, str]
) -> None:
    """Shadow scoring: with a challenger alias, the API scores each announced bar with the champion
    (whose score the bot trades) and the challenger, and writes both to ``trading.shadow_predictions``;
    the next bar's close judges both (``hft.trading.shadow.compare``), and ``hft shadow`` shows them."""
    from datetime import timedelta

    import redis
    from sqlalchemy import text

    from hft.config import use_mlflow
    from hft.features.calculator import CLOSED_STREAM
    from hft.features.online import OnlineFeatures, OnlineWriter
    from hft.ml.registry import set_alias
    from hft.storage.db import engine
    from hft.trading import shadow
    from hft.trading.scoring import SCORED_STREAM

    s = serving_settings
    client = redis.Redis.from_url(s.redis_dsn)
    eng = engine(s)
    latest = OnlineFeatures(s).latest("BTCUSDT")
    assert latest is not None
    # the two bars after the fixture's history (a fresh challenger reads its window from there); what
    # earlier tests and runs recorded for them is forgotten first
    bars = [online_rows["feature_time"] + timedelta(minutes=15 * k) for k in (1, 2)]
    closes = ["62000.0", "62310.0"]  # the second bar closes 0.5 % higher: the first one was "up"
    announced: list[bytes] = []

    def rows_for(feature_time: Any) -> list[Any]:
        with eng.connect() as conn:
            return conn.execute(
                text(
                    "SELECT role, model_version, close FROM trading.shadow_predictions "
                    "WHERE model_name = :m AND symbol = 'BTCUSDT' AND open_time = :t ORDER BY role"
                ),
                {"m": TEST_MODEL, "t": feature_time - timedelta(minutes=15)},
            ).all()

    def forget() -> None:
        with eng.begin() as conn:
            conn.execute(
                text(
                    "DELETE FROM trading.shadow_predictions WHERE model_name = :m AND open_time >= :a "
                    "AND open_time <= :b"
                ),
                {"m": TEST_MODEL, "a": bars[0] - timedelta(minutes=15), "b": bars[1]},
            )

    forget()
    set_alias(s, TEST_MODEL, "challenger", registered_model["v2"])
    try:
        for feature_time, close in zip(bars, closes, strict=True):
            OnlineWriter(s).write("BTCUSDT", feature_time, latest[1])
            ns = int(feature_time.timestamp() * 1e9)
            deadline = time.monotonic() + 60
            # announced again until both rows are there: the API loads the challenger at its next poll,
            # and a bar scored again writes only what is new
            while len(rows_for(feature_time)) < 2:
                assert time.monotonic() < deadline, f"rows for {feature_time}: {rows_for(feature_time)}"
                announced.append(
                    client.xadd(
                        CLOSED_STREAM,
                        {
                            "symbol": "BTCUSDT",
                            "interval": s.bar_interval,
                            "open_time_ns": ns - 15 * 60 * 10**9,
                            "feature_time_ns": ns,
                            "close": close,
                            "close_receive_time_ns": time.time_ns(),
                            "published_ns": time.time_ns(),
                            "has_features": 1,
                        },
                    )
                )
                time.sleep(2.0)
            got = rows_for(feature_time)
            assert [(r.role, r.model_version) for r in got] == [
                ("challenger", registered_model["v2"]),
                ("champion", registered_model["v1"]),
            ]
            assert {r.close for r in got} == {float(close)}
        with eng.connect() as conn:
            live = shadow.compare(conn, s, registered_model["v2"], registered_model["v1"])
        assert set(live) == {"challenger", "champion"}
        for role in live.values():
            assert role.decisions >= 1
            assert role.base_rate >= 0.5
        hft = str(Path(sys.executable).with_name("hft"))
        env = {**child_env(), "HFT_MODEL_NAME": TEST_MODEL}
        out = subprocess.run([hft, "shadow", "--json"], capture_output=True, text=True, env=env, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        versions = {r["model_version"]: r["role"] for r in json.loads(out.stdout)}
        assert versions[registered_model["v2"]] == "challenger"
        assert versions[registered_model["v1"]] == "champion"
    finally:
        from mlflow import MlflowClient

        uri = use_mlflow(s)
        MlflowClient(tracking_uri=uri, registry_uri=uri).delete_registered_model_alias(
            TEST_MODEL, "challenger"
        )
        forget()
        _drop_online_row(s, "BTCUSDT")
        online_rows["write_latest"]()
        if announced:
            client.xdel(CLOSED_STREAM, *announced)
        ours = {str(int(t.timestamp() * 1e9)).encode() for t in bars}
        scored = [
            i for i, f in client.xrevrange(SCORED_STREAM, count=500) if f.get(b"feature_time_ns") in ours
        ]
        if scored:
            client.xdel(SCORED_STREAM, *scored)
