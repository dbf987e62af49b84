"""Tasks: ``orders.simulate`` (fill an intent once), ``reports.pnl`` and ``reports.daily``."""

from __future__ import annotations

import logging
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import Counter, Histogram
from sqlalchemy.exc import OperationalError

from hft.config import TransientError, get_settings
from workers.app import app

log = logging.getLogger(__name__)

FILLS = Counter("hft_worker_orders", "orders.simulate outcomes", ["outcome"])
FILL_SECONDS = Histogram(
    "hft_worker_order_seconds",
    "Time to simulate and persist one fill",
    buckets=(0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0),
)


def _engine() -> Any:
    from hft.storage.db import engine

    return engine(get_settings())


@app.task(
    name="orders.simulate",
    bind=True,
    acks_late=True,
    autoretry_for=(TransientError,),
    retry_backoff=1,
    retry_backoff_max=5,
    retry_jitter=False,
    max_retries=30,
)
def simulate(self: Any, intent_id: str) -> dict[str, Any]:
    """Fill one order intent against the market (idempotent: a redelivery fills nothing twice)."""
    from hft.trading.store import FillParams, execute_intent

    s = get_settings()
    params = FillParams(
        order_latency_ms=s.order_latency_ms,
        slippage_bps=s.slippage_bps,
        taker_fee_bps=s.taker_fee_bps,
        starting_cash=s.starting_cash,
        max_wait_s=s.fill_max_wait_s,
    )
    with FILL_SECONDS.time():
        try:
            result = execute_intent(_engine(), intent_id, params, datetime.now(UTC))
        except OperationalError as exc:
            raise TransientError(f"database unavailable: {exc.orig}") from exc
    FILLS.labels(result.outcome).inc()
    log.info("intent %s: %s", intent_id, result.outcome)
    return asdict(result)


@app.task(name="orders.resend_pending", acks_late=True)
def resend_pending() -> int:
    """Send again the intents still pending after a minute (a lost message must not strand one)."""
    from hft.trading.store import pending_intent_ids

    with _engine().connect() as conn:
        ids = pending_intent_ids(conn, datetime.now(UTC) - timedelta(minutes=1))
    for intent_id in ids:
        simulate.delay(intent_id)
    return len(ids)


@app.task(name="reports.pnl", acks_late=True, autoretry_for=(TransientError,), max_retries=3)
def pnl() -> dict[str, Any]:
    """Store the book's PnL metrics (realised, unrealised, win rate, Sharpe, drawdown, turnover, fees)."""
    from hft.trading.reports import current_marks, pnl_report

    s = get_settings()
    eng = _engine()
    return pnl_report(
        eng, starting_cash=s.starting_cash, marks=current_marks(eng, s.symbols), now=datetime.now(UTC)
    )


@app.task(name="reports.daily", acks_late=True, autoretry_for=(TransientError,), max_retries=3)
def daily(day: str = "today") -> dict[str, Any]:
    """Write the HTML report with the equity curve for a UTC day (``today``, ``yesterday`` or YYYY-MM-DD)."""
    from hft.trading.reports import current_marks, daily_report

    s = get_settings()
    now = datetime.now(UTC)
    if day == "today":
        when = now
    elif day == "yesterday":
        when = now - timedelta(days=1)
    else:
        when = datetime.fromisoformat(day).replace(tzinfo=UTC)
    eng = _engine()
    metrics, path = daily_report(
        eng,
        day=when,
        starting_cash=s.starting_cash,
        marks=current_marks(eng, s.symbols),
        out_dir=s.home_dir / "reports",
        now=now,
    )
    return {**metrics, "html_path": str(path)}
