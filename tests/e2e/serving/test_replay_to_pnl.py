"""Replayed ticks → features → predictions → intents → fills → PnL, on the real stack and processes.

The replay exchange serves recorded BTCUSDT/ETHUSDT trades renamed to symbols no other test
uses, spaced evenly at 200 trades/s with the market clock 30× faster, so 1m bars close every
2 s; the calculator warms up from real 1m klines (re-timed to end where the replay starts).
The market producer, tick ingestor, feature calculator, model server, trading bot and Celery
worker run as the supervisor runs them. Thresholds 0/0 make every prediction a buy, so each
closed bar gives an intent while the bot is active.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from sqlalchemy import Engine, text

from bench.pipeline import Proc, Rig, bench_symbols, replay_trades, write_trade_files
from hft.config import Settings
from tests.integration.serving.conftest import API_KEY, TEST_MODEL

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
RATE, MARKET_SPEED, SECONDS = 200, 30.0, 150


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(check: Any, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")


def _seed_warmup(
    settings: Settings, data_dir: Path, names: dict[str, str], end: pd.Timestamp, n: int
) -> None:
    from hft.market.ohlcv import read_ohlcv_csv
    from hft.storage.bars import upsert_klines
    from hft.storage.db import connect

    for real, name in names.items():
        bars = read_ohlcv_csv(next((data_dir / "klines_1m").glob(f"{real}_1m_ohlcv_*.csv.gz"))).tail(n)
        bars.index = pd.date_range(end=end - pd.Timedelta("1min"), periods=len(bars), freq="1min", tz="UTC")
        with connect(settings) as conn:
            upsert_klines(conn, bars, name, "1m")


def _intents(engine: Engine, symbols: list[str], status: str | None = None) -> list[Any]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                text(
                    "SELECT id, status, decided_at FROM trading.intents WHERE symbol = ANY(:s) "
                    "AND (CAST(:st AS text) IS NULL OR status = :st) ORDER BY decided_at"
                ),
                {"s": symbols, "st": status},
            )
        )


def test_replayed_ticks_lead_to_fills_once_pnl_and_halt(
    clean_book: Engine,
    registered_model: dict[str, str],
    celery_worker: Any,
    stack_settings: Settings,
    data_dir: Path,
) -> None:
    from hft.features.spec import FEATURE_SPEC

    names = bench_symbols()
    rig = Rig(stack_settings, names, bar_interval="1m")
    start_ms = (time.time_ns() // 60_000_000_000 + 1) * 60_000  # next whole minute
    _seed_warmup(
        stack_settings,
        data_dir,
        names,
        pd.Timestamp(start_ms, unit="ms", tz="UTC"),
        FEATURE_SPEC.warmup_bars + 20,
    )
    write_trade_files(
        replay_trades(
            stack_settings.data_dir,
            names,
            n=RATE * SECONDS,
            start_ms=start_ms,
            rate=RATE,
            market_speed=MARKET_SPEED,
        ),
        rig.source_dir,
    )
    api_port = _free_port()
    api_url = f"http://{stack_settings.bind_host}:{api_port}"
    serving_env = {
        "HFT_MODEL_NAME": TEST_MODEL,
        "HFT_API_KEY": API_KEY,
        "HFT_API_URL": api_url,
        "HFT_BUY_THRESHOLD": "0",
        "HFT_SELL_THRESHOLD": "0",
        "HFT_COOLDOWN_S": "0",
        "HFT_MAX_POSITION_NOTIONAL": "1e12",
        "HFT_LOG_LEVEL": "INFO",
    }
    rig.extra_env.update(serving_env)
    hft = str(Path(sys.executable).with_name("hft"))
    logs = stack_settings.home_dir / "logs"
    api_log = (logs / "e2e-api.log").open("ab")
    api = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("uvicorn")),
            "api.app:create_app",
            "--factory",
            "--host",
            stack_settings.bind_host,
            "--port",
            str(api_port),
            "--workers",
            "1",
            "--no-access-log",
        ],
        env=rig.env(),
        stdout=api_log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:

        def api_up() -> bool:
            if api.poll() is not None:
                pytest.fail("the API exited: see e2e-api.log")
            try:
                return httpx.get(f"{api_url}/ready", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        _wait(api_up, "the API", 180)
        rig.start("exchange", "--speed", f"x{MARKET_SPEED:g}")
        for name in ("tick-ingestor", "feature-calculator", "market-producer"):
            rig.start(name)
        bot = Proc(
            "trading-bot",
            [sys.executable, "-m", "streamers.trading_bot"],
            rig.env(),
            logs / "e2e-trading-bot.log",
        ).start()
        rig.procs["trading-bot"] = bot  # stopped with the others
        rig.wait_ready(["exchange", "tick-ingestor", "feature-calculator", "market-producer"], timeout=180)
        symbols = rig.symbols

        # 1. replayed ticks -> closed bars -> /predict -> intents -> fills with fees
        _wait(lambda: len(_intents(clean_book, symbols, "filled")) >= 3, "three filled intents", 180)
        with clean_book.connect() as conn:
            fills = list(
                conn.execute(
                    text(
                        "SELECT f.intent_id, f.fee, f.price, f.market_price, f.fill_time, i.decided_at, i.model_version, i.side "
                        "FROM trading.fills f JOIN trading.intents i ON i.id = f.intent_id WHERE f.symbol = ANY(:s)"
                    ),
                    {"s": symbols},
                )
            )
            positions = {
                r.symbol: r.quantity
                for r in conn.execute(
                    text("SELECT symbol, quantity FROM trading.positions WHERE symbol = ANY(:s)"),
                    {"s": symbols},
                )
            }
        assert all(f.fee > 0 for f in fills)
        # the bot buys when flat and sells once the position is the model's horizon old (the
        # backtest's lifecycle): buys slip up, sells slip down
        assert any(f.side == "buy" for f in fills)
        assert all(f.price > f.market_price for f in fills if f.side == "buy")
        assert all(f.price < f.market_price for f in fills if f.side == "sell")
        assert all(f.fill_time > f.decided_at for f in fills)
        assert {f.model_version for f in fills} == {registered_model["v1"]}
        assert all(q >= 0 for q in positions.values())  # long-only spot

        # 2. each intent fills once even when its task is delivered again
        again = [celery_worker.send_task("orders.simulate", args=[str(f.intent_id)]) for f in fills]
        assert {r.get(timeout=60)["outcome"] for r in again} == {"already"}
        with clean_book.connect() as conn:
            per_intent = conn.execute(
                text(
                    "SELECT max(n) FROM (SELECT count(*) AS n FROM trading.fills WHERE symbol = ANY(:s) "
                    "GROUP BY intent_id) c"
                ),
                {"s": symbols},
            ).scalar_one()
        assert per_intent == 1

        # 3. a PnL report in PostgreSQL
        report = celery_worker.send_task("reports.pnl").get(timeout=60)
        assert report["fills"] >= len(fills)
        assert report["fees_paid"] > 0

        # 4. halt: no intent decided more than one bar (2 s wall) after the halt
        subprocess.run([hft, "bot", "halt", "--reason", "e2e"], check=True, capture_output=True)
        halted_at = time.monotonic()
        time.sleep(2.0 * 60 / MARKET_SPEED + 1.0)
        count_after_one_bar = len(_intents(clean_book, symbols))
        time.sleep(3 * 60 / MARKET_SPEED)
        assert len(_intents(clean_book, symbols)) == count_after_one_bar, "intents after the halt"
        assert time.monotonic() - halted_at < 60
        metrics = httpx.get(
            f"http://{stack_settings.bind_host}:{stack_settings.port('metrics_trading_bot')}/metrics"
        )
        assert 'trading_bot_decisions_total{reason="halted"}' in metrics.text
        assert "trading_bot_tick_to_signal_seconds_count" in metrics.text
    finally:
        subprocess.run([hft, "bot", "resume"], check=False, capture_output=True)
        rig.stop_all()
        os.killpg(api.pid, signal.SIGTERM)
        try:
            api.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(api.pid, signal.SIGKILL)
        api_log.close()
        rig.delete_rows()
