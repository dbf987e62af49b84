"""orders.simulate against real recorded trades in PostgreSQL: fills once, fees, slippage, latency."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, text

from hft.config import TransientError
from hft.trading.store import FillParams, execute_intent, insert_intent, load_fills
from hft.trading.strategy import Intent, Signal

pytestmark = pytest.mark.integration
PARAMS = FillParams(order_latency_ms=50.0, slippage_bps=2.0, taker_fee_bps=10.0, starting_cash=100_000.0)


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


def test_fill_takes_the_next_trade_after_latency_with_slippage_and_fee(
    clean_book: Engine, btc_trades: list[Any]
) -> None:
    t = btc_trades[100]
    decided = datetime.fromtimestamp(t.trade_time_ms / 1000, UTC)
    iid = _intent(clean_book, Signal.BUY, 0.01, decided)
    res = execute_intent(clean_book, iid, PARAMS, decided + timedelta(seconds=1))
    assert res.outcome == "filled"
    cutoff = t.trade_time_ms + 50
    nxt = min(
        (x for x in btc_trades if x.trade_time_ms >= cutoff), key=lambda x: (x.trade_time_ms, x.trade_id)
    )
    assert res.fill_price == pytest.approx(float(nxt.price) * (1 + 2e-4))
    assert res.fee == pytest.approx(0.01 * res.fill_price * 1e-3)
    with clean_book.connect() as conn:
        cash = conn.execute(text("SELECT cash FROM trading.account")).scalar_one()
        pos = conn.execute(text("SELECT quantity FROM trading.positions WHERE symbol='BTCUSDT'")).scalar_one()
        trade_id = conn.execute(text("SELECT trade_id FROM trading.fills")).scalar_one()
    assert cash == pytest.approx(100_000.0 - 0.01 * res.fill_price - res.fee)
    assert pos == pytest.approx(0.01)
    assert trade_id == nxt.trade_id


def test_same_intent_twice_fills_once(clean_book: Engine, btc_trades: list[Any]) -> None:
    decided = datetime.fromtimestamp(btc_trades[10].trade_time_ms / 1000, UTC)
    iid = _intent(clean_book, Signal.BUY, 0.02, decided)
    with ThreadPoolExecutor(4) as pool:  # concurrent redeliveries, then a late one
        outcomes = list(
            pool.map(lambda _: execute_intent(clean_book, iid, PARAMS, decided).outcome, range(4))
        )
    outcomes.append(execute_intent(clean_book, iid, PARAMS, decided).outcome)
    assert outcomes.count("filled") == 1
    assert outcomes.count("already") == 4
    with clean_book.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM trading.fills")).scalar_one() == 1
        assert conn.execute(text("SELECT count(*) FROM trading.orders")).scalar_one() == 1
        assert conn.execute(text("SELECT quantity FROM trading.positions")).scalar_one() == pytest.approx(
            0.02
        )


def test_no_trade_yet_is_transient_then_falls_back_to_last_trade(
    clean_book: Engine, btc_trades: list[Any]
) -> None:
    last = btc_trades[-1]
    decided = datetime.fromtimestamp(last.trade_time_ms / 1000, UTC) + timedelta(seconds=5)
    iid = _intent(clean_book, Signal.BUY, 0.01, decided)
    with pytest.raises(TransientError, match="no trade"):
        execute_intent(clean_book, iid, PARAMS, decided + timedelta(seconds=1))
    res = execute_intent(clean_book, iid, PARAMS, decided + timedelta(seconds=60))
    assert res.outcome == "filled"
    with clean_book.connect() as conn:
        assert conn.execute(text("SELECT price_source FROM trading.fills")).scalar_one() == "last_trade"


def test_round_trip_realises_pnl_net_of_fees(clean_book: Engine, btc_trades: list[Any]) -> None:
    a = datetime.fromtimestamp(btc_trades[0].trade_time_ms / 1000, UTC)
    b = datetime.fromtimestamp(btc_trades[-200].trade_time_ms / 1000, UTC)
    execute_intent(clean_book, _intent(clean_book, Signal.BUY, 0.05, a), PARAMS, b)
    execute_intent(clean_book, _intent(clean_book, Signal.SELL, 0.05, b), PARAMS, b + timedelta(seconds=1))
    with clean_book.connect() as conn:
        fills = load_fills(conn)
        pos = conn.execute(text("SELECT quantity, realized_pnl, fees FROM trading.positions")).one()
        cash = conn.execute(text("SELECT cash FROM trading.account")).scalar_one()
    buy, sell = fills[0].fill, fills[1].fill
    assert pos.quantity == pytest.approx(0.0, abs=1e-12)
    assert pos.realized_pnl == pytest.approx(0.05 * (sell.price - buy.price))
    assert cash - 100_000.0 == pytest.approx(pos.realized_pnl - pos.fees)
