"""Fixtures for serving integration tests: the real stack, migrated, with real recorded trades."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from hft.config import Settings
from hft.devstack.host import child_env

TRADES_FILE = "trades/spot_BTCUSDT_trades_2024-08-08T2354Z_2024-08-09T0005Z.csv.gz"


@pytest.fixture(scope="session")
def trading_engine(stack: Any, stack_settings: Settings) -> Engine:
    """The market database, migrated to head."""
    from hft.storage.db import engine, migrate

    migrate(stack_settings)
    return engine(stack_settings)


@pytest.fixture(scope="session")
def btc_trades(trading_engine: Engine, stack_settings: Settings, data_dir: Path) -> list[Any]:
    """Real BTCUSDT spot trades (archive file) written to market.ticks through the storage writer."""
    from hft.market.replay import read_trade_file
    from hft.schema.market_pb2 import Tick
    from hft.storage.ticks import TickWriter

    trades = read_trade_file(data_dir / TRADES_FILE, "BTCUSDT")
    ticks = [
        Tick(
            symbol=t.symbol,
            trade_id=t.trade_id,
            price=float(t.price),
            quantity=float(t.quantity),
            buyer_is_maker=t.buyer_is_maker,
            trade_time_ns=t.trade_time_ms * 1_000_000,
            event_time_ns=t.event_time_ms * 1_000_000,
            receive_time_ns=t.trade_time_ms * 1_000_000,
            source=Tick.SOURCE_ARCHIVE,
            venue="binance-spot",
        )
        for t in trades
    ]
    writer = TickWriter(stack_settings)
    try:
        writer.write(ticks)
    finally:
        writer.close()
    return trades


@pytest.fixture
def clean_book(trading_engine: Engine) -> Iterator[Engine]:
    """Empty trading tables (and the bot ACTIVE) before and after a test."""

    def wipe() -> None:
        with trading_engine.begin() as conn:
            # a worker may still be filling an intent: take the intents table first (the fill path
            # locks an intent row before anything else), so the wipe waits instead of deadlocking
            conn.execute(text("LOCK TABLE trading.intents IN EXCLUSIVE MODE"))
            for table in ("fills", "orders", "intents", "positions", "account", "reports"):
                conn.execute(text(f"DELETE FROM trading.{table}"))
            conn.execute(text("UPDATE trading.bot_state SET state = 'active', reason = 'test'"))

    wipe()
    yield trading_engine
    wipe()


@pytest.fixture(scope="session")
def celery_worker(trading_engine: Engine, stack_settings: Settings) -> Iterator[Any]:
    """A real Celery worker process (``workers.app``) on the test stack's Redis."""
    import os
    import signal
    import subprocess
    import sys
    import time

    log = stack_settings.home_dir / "logs" / "test-celery-worker.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    celery = Path(sys.executable).with_name("celery")
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [
                str(celery),
                "-A",
                "workers.app",
                "worker",
                "--pool",
                "threads",
                "--concurrency",
                "4",
                "--loglevel",
                "INFO",
                "-n",
                f"test-{stack_settings.port_base}@%h",
                "--without-gossip",
                "--without-mingle",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**child_env(), "HFT_FILL_MAX_WAIT_S": "3"},
            start_new_session=True,
        )
    from kombu.exceptions import OperationalError
    from redis.exceptions import ConnectionError as RedisConnectionError

    from workers.app import app

    def _drop_stale_connections() -> None:
        # Earlier tests in the session restart Redis (fault tests, the outage test); the app
        # imported in this process may still hold sockets to the old server.
        app.backend.client.connection_pool.disconnect()

    def _wait_ready() -> None:
        _drop_stale_connections()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"celery worker exited: {log.read_text()[-2000:]}")
            try:
                with app.connection_for_write() as conn:  # a fresh connection, not one from the pool
                    replies = app.control.ping(timeout=0.5, connection=conn)
            except (RedisConnectionError, OperationalError, OSError):
                _drop_stale_connections()
                time.sleep(0.5)
                continue
            if replies:
                return
        pytest.fail(f"celery worker not ready: {log.read_text()[-2000:]}")

    try:
        _wait_ready()
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)  # never leave a worker behind to steal later sessions' tasks
        raise
    yield app
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


TEST_MODEL = "hft-serving-test"
API_KEY = "serving-test-key"


@pytest.fixture(scope="session")
def serving_settings(stack_settings: Settings) -> Settings:
    """The test stack's settings with the test model name and an API key."""
    from pydantic import SecretStr

    return stack_settings.model_copy(update={"model_name": TEST_MODEL, "api_key": SecretStr(API_KEY)})


@pytest.fixture(scope="session")
def registered_model(trading_engine: Engine, serving_settings: Settings, data_dir: Path) -> dict[str, str]:
    """A real ensemble (the ML engineer's fit on two months of BTCUSDT 15m klines) in the test MLflow.

    Two registered versions of it (the second a new version of the same artifacts, so hot
    reload has somewhere to go); ``champion`` on version 1. Tuning and the walk-forward report
    are skipped to keep the suite inside its time budget.
    """
    import mlflow
    import numpy as np
    import pandas as pd
    from mlflow import MlflowClient

    from hft.ml.dataset import build_dataset, default_feature_set, interval_timedelta, load_bars
    from hft.ml.models import DEFAULT_PARAMS, FitConfig, fit_ensemble
    from hft.ml.registry import log_ensemble, set_alias

    s = serving_settings
    client = MlflowClient(tracking_uri=s.mlflow_uri)
    versions = sorted(
        (int(v.version) for v in client.search_model_versions(f"name='{TEST_MODEL}'")), reverse=True
    )
    if not versions:
        bars = load_bars(data_dir / "klines_15m", ["BTCUSDT"], "15m")
        b = bars["BTCUSDT"]
        ds = build_dataset(
            {"BTCUSDT": b[b.index >= pd.Timestamp("2025-07-01", tz="UTC")]},
            default_feature_set(),
            "15m",
            horizon=1,
        )
        params = {k: dict(v) for k, v in DEFAULT_PARAMS.items()}
        seq = int(params["lstm"]["seq_len"])
        lab = ds.labeled()
        rows = lab[ds.window_ok(seq)[lab]]
        rows = rows[np.argsort(ds.times[rows], kind="stable")][-3000:]
        step = interval_timedelta("15m").value
        ens, _ = fit_ensemble(
            ds.X,
            ds.y,
            ds.times,
            rows,
            ds.feature_names,
            ds.feature_version,
            params,
            FitConfig(lstm_seconds=2.0, rf_max_rows=3000, lstm_max_rows=3000),
            step,
            4 * step,
        )
        mlflow.set_tracking_uri(s.mlflow_uri)
        mlflow.set_experiment(TEST_MODEL)
        example = pd.DataFrame(ds.X[rows[-seq - 2 :]].astype(np.float64), columns=list(ds.feature_names))
        with mlflow.start_run(run_name="serving-test"):
            log_ensemble(ens, example, TEST_MODEL)
        versions = [1]
    if len(versions) < 2:
        mv = client.get_model_version(TEST_MODEL, str(min(versions)))
        mlflow.set_tracking_uri(s.mlflow_uri)
        mlflow.register_model(mv.source, TEST_MODEL)  # a new version of the same logged model
        versions = sorted(
            (int(v.version) for v in client.search_model_versions(f"name='{TEST_MODEL}'")), reverse=True
        )
    v2, v1 = str(versions[0]), str(versions[1])
    set_alias(s, TEST_MODEL, "champion", v1)
    return {"v1": v1, "v2": v2}


@pytest.fixture(scope="session")
def online_rows(trading_engine: Engine, serving_settings: Settings, data_dir: Path) -> Any:
    """Features of real BTCUSDT klines: history in features.bar_features, the newest row online (Redis)."""
    import pandas as pd

    from hft.features import FEATURE_SPEC_OHLCV, compute_features
    from hft.features.offline import upsert_features
    from hft.features.online import OnlineWriter
    from hft.features.store import ensure_applied
    from hft.market.ohlcv import read_ohlcv_csv
    from hft.storage.db import connect

    s = serving_settings
    bars = read_ohlcv_csv(next((data_dir / "klines_15m").glob("BTCUSDT_15m_ohlcv_*.csv.gz")))
    bars = bars[bars.index >= pd.Timestamp("2025-08-01", tz="UTC")]
    feats = compute_features(bars, FEATURE_SPEC_OHLCV).dropna()
    with connect(s) as conn:
        upsert_features(conn, "BTCUSDT", s.bar_interval, feats, FEATURE_SPEC_OHLCV.version)
    ensure_applied(s)
    close = feats.index[-1] + pd.Timedelta("15min")

    def write_latest() -> None:
        OnlineWriter(s).write("BTCUSDT", close.to_pydatetime(), feats.iloc[-1].to_dict())

    write_latest()
    return {"feature_time": close.to_pydatetime(), "write_latest": write_latest}


# several workers, as users scale the API: every live-API test runs against them
API_WORKERS = 2


@pytest.fixture(scope="package")  # its port is free again for the security suite's API
def api_server(
    registered_model: dict[str, str], online_rows: Any, serving_settings: Settings
) -> Iterator[str]:
    """The model server as the supervisor runs it (``python -m api.serve``: uvicorn with
    ``API_WORKERS`` workers behind one port), on the test ports."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import httpx

    s = serving_settings
    url = f"http://{s.bind_host}:{s.port('api')}"
    log = s.home_dir / "logs" / "test-api.log"
    # SOLUSDT: a configured symbol no test ever writes features for (other tests in the session
    # fill BTCUSDT and ETHUSDT in the shared online store)
    env = {
        **child_env(),
        "HFT_MODEL_NAME": TEST_MODEL,
        "HFT_API_KEY": API_KEY,
        "HFT_MODEL_POLL_S": "0.5",
        "HFT_API_WORKERS": str(API_WORKERS),
        "HFT_SYMBOLS": '["BTCUSDT","ETHUSDT","SOLUSDT"]',
    }
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "api.serve"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    deadline = time.monotonic() + 180
    in_a_row = 0  # each worker loads its model: ready when 20 new connections in a row say so
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"api exited: {log.read_text()[-3000:]}")
        try:
            ok = httpx.get(f"{url}/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            ok = False
        in_a_row = in_a_row + 1 if ok else 0
        if in_a_row >= 20 * API_WORKERS:
            break
        time.sleep(0.05 if ok else 0.3)
    else:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"api not ready: {httpx.get(f'{url}/ready').text} {log.read_text()[-3000:]}")
    yield url
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
