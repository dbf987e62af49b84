"""The dashboard's e2e world: real replayed market data, a registered model, paper fills, validations.

Where every number on the pages comes from:

* ticks and bars: the replay exchange serves the shared 2024-08-08/09 spot captures (BTCUSDT,
  ETHUSDT) once at full speed; the market producer and the tick ingestor (started by the
  project's supervisor) carry them through the broker into ``market.ticks`` and the 1m/15m
  bars;
* history and features: the shared 15 m klines of the weeks before, loaded with
  ``hft.storage.bars.upsert_klines``; offline features from ``hft.features.backfill``;
* the model registry: a model trained by ``hft.ml.train`` on those klines with a small plan
  (seconds, not minutes) and registered as ``challenger`` (a registry that already holds a
  challenger or champion, e.g. from another test of the session, is reused). When there is no
  champion, the challenger also gets the ``champion`` alias directly (the gate of ``hft promote``
  costs tens of seconds and is tested in tests/integration/orchestration): the API serves it and
  the bot process scores the replay's closed 15 m bars, as in the demo;
* the whole application runs as in ``hft up``: exchange, market producer, tick ingestor, feature
  calculator, API, trading bot, worker and dashboard, so every Prometheus target is up;
* trading: ``hft.trading.bot.TradingBot`` decides on every closed 1 m bar of the replay and
  the project's Celery worker fills each intent with ``hft.trading.store.execute_intent``
  against the next real trade (slippage, fees). The probabilities given to the bot are
  scripted (alternating up/down per symbol) because a small model's probabilities over a
  ten-minute window rarely cross the thresholds, and an empty book shows nothing; every
  price, fee, position and PnL number is computed by the project's code from the real trades;
* data quality: ``hft.quality.validate`` runs the Great Expectations checkpoints on the
  replayed ticks and the 15 m bars and builds the data docs;
* system: Prometheus (started by the stack) scrapes the processes this module starts.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from hft.config import REPO_ROOT, Settings

CAPTURE_START = datetime(2024, 8, 8, 23, 54, tzinfo=UTC)
CAPTURE_END = datetime(2024, 8, 9, 0, 6, tzinfo=UTC)
HISTORY_START = "2024-06-15"
PROCESSES = [
    "exchange",
    "market-producer",
    "tick-ingestor",
    "feature-calculator",
    "api",
    "trading-bot",
    "worker",
    "dashboard",
]
FEED = ("exchange", "market-producer")  # started once the rest is ready
ARTIFACTS = REPO_ROOT / "tests" / "artifacts" / "dashboard"
API_KEY = "e2e-dashboard-key"  # a throwaway key of this test's own stack


def _wait(check: Any, what: str, timeout: float, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what}: not reached within {timeout:.0f}s (last: {last!r})")


def _status(url: str) -> int:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return 0


def _model(api: str) -> dict[str, Any]:
    try:
        r = httpx.get(f"{api}/model", timeout=2)
    except httpx.HTTPError:
        return {}
    return dict(r.json()) if r.status_code == 200 else {}


def _port_open(host: str, port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.3)
        return sock.connect_ex((host, port)) == 0


def _load_history(settings: Settings) -> None:
    from hft.features.backfill import backfill
    from hft.market.ohlcv import read_ohlcv_csv
    from hft.storage import db
    from hft.storage.bars import upsert_klines

    kdir = settings.data_dir / "klines_15m"
    with db.connect(settings) as conn:
        for sym in settings.symbols:
            df = read_ohlcv_csv(sorted(kdir.glob(f"{sym}_15m_ohlcv_*.csv*"))[0])
            # closed klines up to the capture's end; the open 00:00 bar exists only from the ticks
            df = df[(df.index >= HISTORY_START) & (df.index < "2024-08-09 00:00")]
            upsert_klines(conn, df, sym, "15m")
    for sym in settings.symbols:
        # bars opening before 00:00: the 00:00 bar never closes within the capture
        backfill(
            settings,
            sym,
            "15m",
            datetime(2024, 8, 1, tzinfo=UTC),
            datetime(2024, 8, 9, tzinfo=UTC),
            materialize=False,
        )


def _train_cheap(settings: Settings, start: str, end: str) -> None:
    """Train and register (alias ``challenger``) a model in seconds: the page needs registered
    models, not good ones."""
    from hft.ml.evaluation import WalkForwardConfig
    from hft.ml.models import FitConfig
    from hft.ml.train import TrainPlan, log_and_register, train

    plan = TrainPlan(
        tune_seconds=2,
        fit=FitConfig(threads=1, lstm_seconds=2, rf_max_rows=3000, lstm_max_rows=3000),
        wf=WalkForwardConfig(n_folds=2, max_train_rows=4000, n_boot=20),
        tune_max_rows=2000,
    )
    result = train(
        settings,
        list(settings.symbols),
        "15m",
        settings.data_dir / "klines_15m",
        start,
        end,
        0.5,
        None,
        f"e2e-dashboard-{time.time_ns()}",
        plan=plan,
    )
    log_and_register(settings, result, settings.model_name)


def _ensure_model(settings: Settings) -> tuple[str, str]:
    """A champion and a challenger of another version (the Models page shows them side by side, and
    the API shadow-scores the challenger beside the champion); returns their versions."""
    from hft.ml.registry import set_alias
    from hft.reporting.models import models_view

    if not models_view(settings).versions:  # neither champion nor challenger yet
        _train_cheap(settings, "2024-07-01", "2024-08-07")
    # No `hft promote` here: the gate scores both versions (tens of seconds) and a seconds-long
    # model rarely passes it. The API needs a champion to serve, so a registry without one gets the
    # challenger as champion directly.
    view = models_view(settings)
    if "champion" not in view.versions:
        set_alias(settings, settings.model_name, "champion", view.versions["challenger"].version)
    view = models_view(settings)
    if (
        "challenger" not in view.versions
        or view.versions["challenger"].version == view.versions["champion"].version
    ):
        _train_cheap(settings, "2024-06-01", "2024-07-07")  # another window: another model
        view = models_view(settings)
    return str(view.versions["champion"].version), str(view.versions["challenger"].version)


def _trade_replayed_bars(settings: Settings) -> int:
    """Run the bot's decision step on each closed 1 m bar; the worker fills the intents."""
    from sqlalchemy import text

    from hft.storage.db import engine
    from hft.trading.bot import BarEvent, TradingBot
    from workers.app import app as celery_app

    eng = engine(settings)
    with eng.connect() as conn:
        done = conn.execute(
            text("SELECT count(*) FROM trading.fills WHERE fill_time >= :a AND fill_time < :b"),
            {"a": CAPTURE_START, "b": CAPTURE_END},
        ).scalar_one()
        if done:  # a kept stack (HFT_TEST_KEEP_STACK=1) already traded this replay: the bot would cool down
            return int(done)
        last_trade = conn.execute(text("SELECT max(trade_time) FROM market.ticks")).scalar_one()
        bars = conn.execute(
            text(
                "SELECT symbol, close, close_time FROM market.bars WHERE interval = '1m' AND source = 'ticks' "
                "AND close_time <= :last ORDER BY close_time, symbol"
            ),
            {"last": last_trade},
        ).all()
    assert len(bars) >= 10, f"only {len(bars)} closed 1m bars from the replay"
    flips: dict[str, int] = {}
    state: dict[str, datetime] = {}

    def predict(symbol: str) -> dict[str, Any]:
        n = flips[symbol] = flips.get(symbol, 0) + 1
        return {
            "prob_up": 0.9 if n % 2 else 0.1,
            "model_name": "e2e-scripted",
            "model_version": "alternating",
            "feature_time": state["now"].isoformat(),
        }

    sent: list[str] = []
    bot = TradingBot(
        # it decides on 1m bars: its lifecycle counts the horizon (settings.label_horizon, 1) in them
        settings.model_copy(update={"bar_interval": "1m"}),
        eng,
        predict,
        lambda iid: (sent.append(iid), celery_app.send_task("orders.simulate", args=[iid])),
        clock_ns=lambda: int(state["now"].timestamp() * 1e9),
    )
    for symbol, close, close_time in bars:
        state["now"] = close_time + timedelta(milliseconds=3)
        bot.on_bar(BarEvent(symbol, float(close), close_time))
    assert sent, "the bot sent no intent"

    def settled() -> bool:
        with eng.connect() as conn:
            return (
                conn.execute(
                    text("SELECT count(*) FROM trading.intents WHERE status = 'pending'")
                ).scalar_one()
                == 0
            )

    _wait(settled, "the worker filling every intent", 60)
    return len(sent)


def _scrape_started_processes(settings: Settings) -> None:
    """Regenerate the stack's Prometheus config for these settings (replay: the exchange too) and reload."""
    import signal

    from hft.devstack.stack import Stack

    st = Stack(settings)
    if not st.prometheus.available() or not st.pidfile("prometheus").exists():
        return
    st.prometheus.write_config()
    os.kill(int(st.pidfile("prometheus").read_text().strip()), signal.SIGHUP)  # Prometheus reloads on HUP


def _validate(settings: Settings) -> None:
    from hft.quality.validate import validate_bars, validate_ticks

    validate_ticks(settings, CAPTURE_START, CAPTURE_END, settings.symbols)
    validate_bars(
        settings, datetime(2024, 8, 1, tzinfo=UTC), datetime(2024, 8, 9, tzinfo=UTC), settings.symbols, "15m"
    )


@pytest.fixture(scope="module")
def dashboard_world(stack: Any, stack_settings: Settings) -> Iterator[dict[str, Any]]:
    """Everything above, then the dashboard URL and the jobs Prometheus must see up."""
    from hft.devstack.supervisor import Supervisor
    from hft.market.replay import load_source
    from hft.storage import db
    from hft.storage.ticks import count_ticks

    env = {
        "HFT_MARKET": "replay",
        "HFT_REPLAY_SPEED": "max",
        "HFT_REPLAY_LOOP": "false",
        "HFT_API_KEY": API_KEY,
        "HFT_DASHBOARD_REFRESH_S": "60",
    }
    old = {k: os.environ.get(k) for k in env}
    # refresh once a minute: chromium's virtual time would otherwise replay every refresh of its budget
    os.environ.update(env)  # the supervisor's children inherit it
    settings = Settings(
        home=stack_settings.home,
        port_base=stack_settings.port_base,
        data_dir=stack_settings.data_dir,
        market="replay",
        replay_speed="max",
        replay_loop=False,
        api_key=API_KEY,
    )
    sup = Supervisor(settings, PROCESSES)
    sup.stop()  # a supervisor left by an earlier test has the wrong environment
    # supervisord stops answering before it lets go of its HTTP port; a new one would fail to bind
    _wait(lambda: not _port_open(settings.bind_host, settings.port("supervisor")), "old supervisord gone", 30)
    timings: dict[str, float] = {}
    db.migrate(settings)
    expected = len(load_source(settings.data_dir, settings.symbols).trades)
    # a kept test home (HFT_TEST_KEEP_STACK=1) has ingested the replay before: nothing flows live now
    fresh = count_ticks(settings, settings.symbols) < expected
    # history and model first: the calculator warms up from the stored bars, the API loads the champion
    t = time.monotonic()
    _load_history(settings)
    from hft.features.store import ensure_applied

    ensure_applied(settings)  # the Feast registry the API reads through (`hft features apply`)
    timings["history_s"] = time.monotonic() - t
    t = time.monotonic()
    champion, challenger = _ensure_model(settings)
    timings["model_s"] = time.monotonic() - t
    t = time.monotonic()
    # the feed last: in the demo the API serves the champion before the first bar closes; at replay
    # speed `max` the whole capture (and its one closed 15 m bar) passes within seconds of the start
    Supervisor(settings, [p for p in PROCESSES if p not in FEED]).start()
    api = f"http://{settings.bind_host}:{settings.port('api')}"
    _wait(lambda: _status(f"{api}/ready") == 200, "the API ready with the champion", 180, 1.0)
    # the challenger loads after the champion serves: the feed waits for it, so every closed bar of
    # the replay is scored by both (the Models page's live record)
    _wait(
        lambda: _model(api).get("shadow_version") == challenger,
        f"the API shadow-scoring challenger v{challenger} beside champion v{champion}",
        180,
        1.0,
    )
    sup.start()  # every process: supervisord adds the feed to the running ones
    _scrape_started_processes(settings)
    timings["start_processes_s"] = time.monotonic() - t
    t = time.monotonic()
    # writes are idempotent (unique trade ids), so a rerun on a kept stack finds the same count
    _wait(
        lambda: count_ticks(settings, settings.symbols) >= expected,
        f"{expected} replayed trades in market.ticks",
        120,
        1.0,
    )
    timings["replay_ingest_s"] = time.monotonic() - t
    t = time.monotonic()
    intents = _trade_replayed_bars(settings)
    timings["trading_s"] = time.monotonic() - t
    t = time.monotonic()
    _validate(settings)
    timings["validation_s"] = time.monotonic() - t
    url = f"http://{settings.bind_host}:{settings.port('dashboard')}"
    _wait(lambda: httpx.get(f"{url}/healthz", timeout=2).status_code == 200, "dashboard up", 30)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "timings.txt").write_text("\n".join(f"{k} {v:.1f}" for k, v in timings.items()) + "\n")
    yield {
        "url": url,
        "login": (settings.dashboard_user, settings.dashboard_password.get_secret_value()),
        "settings": settings,
        "jobs": [*list(PROCESSES), "kafka"],
        "intents": intents,
        "champion": champion,
        "challenger": challenger,
        "expected_ticks": expected,
        "fresh": fresh,
        "artifacts": ARTIFACTS,
        "timings": timings,
    }
    if os.environ.get("HFT_TEST_KEEP_STACK") != "1":
        sup.stop()
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def screenshot_dir() -> Path:
    """Where the page PNGs go (git-ignored)."""
    return ARTIFACTS
