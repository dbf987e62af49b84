"""The Celery tasks through a real worker and Redis broker: idempotent fills, reports."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine, text

from hft.config import Settings
from hft.trading.store import insert_intent
from hft.trading.strategy import Intent, Signal

pytestmark = pytest.mark.integration


def _intent(engine: Engine, side: Signal, qty: float, at: datetime) -> str:
    with engine.begin() as conn:
        return str(
            insert_intent(
                conn,
                Intent("BTCUSDT", side, qty, 60_000.0, 0.7, at),
                model_name="m",
                model_version="1",
                feature_time=at,
                tick_receive_ns=None,
            )
        )


def test_task_delivered_twice_fills_once(
    clean_book: Engine, btc_trades: list[Any], celery_worker: Any
) -> None:
    decided = datetime.fromtimestamp(btc_trades[50].trade_time_ms / 1000, UTC)
    iid = _intent(clean_book, Signal.BUY, 0.03, decided)
    first = celery_worker.send_task("orders.simulate", args=[iid])
    second = celery_worker.send_task("orders.simulate", args=[iid])  # the same intent delivered again
    outcomes = sorted([first.get(timeout=30)["outcome"], second.get(timeout=30)["outcome"]])
    assert outcomes == ["already", "filled"]
    with clean_book.connect() as conn:
        assert (
            conn.execute(
                text("SELECT count(*) FROM trading.fills WHERE intent_id = :i"), {"i": iid}
            ).scalar_one()
            == 1
        )
        assert (
            conn.execute(text("SELECT status FROM trading.intents WHERE id = :i"), {"i": iid}).scalar_one()
            == "filled"
        )


def test_task_retries_until_the_next_trade_or_the_wait_runs_out(
    clean_book: Engine, btc_trades: list[Any], celery_worker: Any
) -> None:
    iid = _intent(
        clean_book, Signal.BUY, 0.01, datetime.now(UTC)
    )  # no trade after now: TransientError, retries
    res = celery_worker.send_task("orders.simulate", args=[iid]).get(timeout=60)
    assert res["outcome"] == "filled"  # after HFT_FILL_MAX_WAIT_S=3 it took the last trade
    with clean_book.connect() as conn:
        assert conn.execute(text("SELECT price_source FROM trading.fills")).scalar_one() == "last_trade"


def test_reports_store_metrics_and_write_daily_html(
    clean_book: Engine, btc_trades: list[Any], celery_worker: Any, stack_settings: Settings
) -> None:
    a = datetime.fromtimestamp(btc_trades[0].trade_time_ms / 1000, UTC)
    b = datetime.fromtimestamp(btc_trades[-100].trade_time_ms / 1000, UTC)
    for side, at in ((Signal.BUY, a), (Signal.SELL, b)):
        celery_worker.send_task("orders.simulate", args=[_intent(clean_book, side, 0.05, at)]).get(timeout=30)
    pnl = celery_worker.send_task("reports.pnl").get(timeout=30)
    assert pnl["fills"] == 2
    assert pnl["closed_trades"] == 1
    assert pnl["fees_paid"] > 0
    daily = celery_worker.send_task("reports.daily", args=[a.date().isoformat()]).get(timeout=60)
    html = stack_settings.home_dir / "reports" / f"daily-{a.date().isoformat()}.html"
    assert daily["html_path"] == str(html)
    page = html.read_text()
    assert "data:image/png;base64," in page
    assert "max_drawdown" in page
    with clean_book.connect() as conn:
        kinds = sorted(r.kind for r in conn.execute(text("SELECT kind FROM trading.reports")))
    assert kinds == ["daily", "pnl"]


@pytest.mark.faults
def test_an_intent_queued_across_a_redis_restart_is_filled_exactly_once(
    clean_book: Engine, btc_trades: list[Any], celery_worker: Any, stack_settings: Settings
) -> None:
    """Redis holds the Celery queue: with AOF a restart keeps the queued intent (before, `--appendonly
    no` lost it), and late acks plus the idempotent task fill it once."""
    import os
    import signal

    from hft.devstack.stack import Stack

    stats = celery_worker.control.inspect(timeout=5).stats() or {}
    pids = [s["pid"] for name, s in stats.items() if name.startswith(f"test-{stack_settings.port_base}@")]
    assert len(pids) == 1, stats
    decided = datetime.fromtimestamp(btc_trades[80].trade_time_ms / 1000, UTC)
    iid = _intent(clean_book, Signal.SELL, 0.02, decided)
    os.kill(pids[0], signal.SIGSTOP)  # the worker takes nothing: the task waits in Redis' queue
    try:
        pending = celery_worker.send_task("orders.simulate", args=[iid])
        redis_ = Stack(stack_settings).redis
        redis_.stop()
        redis_.start()
        celery_worker.backend.client.connection_pool.disconnect()  # sockets to the old server
    finally:
        os.kill(pids[0], signal.SIGCONT)
    assert pending.get(timeout=90)["outcome"] == "filled"
    with clean_book.connect() as conn:
        fills = conn.execute(text("SELECT count(*) FROM trading.fills WHERE intent_id = :i"), {"i": iid})
        assert fills.scalar_one() == 1
        status = conn.execute(text("SELECT status FROM trading.intents WHERE id = :i"), {"i": iid})
        assert status.scalar_one() == "filled"
