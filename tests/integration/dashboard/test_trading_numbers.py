"""The Trading page's numbers equal what SQL computes straight from ``trading.*`` and ``market.ticks``.

Orders and fills are written the way the system writes them: intents through
``hft.trading.store.insert_intent``, filled by ``execute_intent`` (what the ``orders.simulate``
task runs) against the real recorded trades. The page's refresh callback is called through
Dash's own HTTP endpoint, with the login, as the browser calls it.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Engine, text

from hft.config import Settings
from hft.trading.store import FillParams, execute_intent, insert_intent
from hft.trading.strategy import Intent, Signal

pytestmark = pytest.mark.integration

PARAMS = FillParams(order_latency_ms=50.0, slippage_bps=2.0, taker_fee_bps=10.0, starting_cash=100_000.0)
T0 = datetime(2024, 8, 8, 23, 55, tzinfo=UTC)

# equity(t) by the definition, in SQL only: cash from the fills up to t, each holding at the newest trade <= t
EQUITY_AT = """
WITH f AS (
    SELECT symbol,
           CASE side WHEN 'buy' THEN quantity ELSE -quantity END AS signed,
           CASE side WHEN 'buy' THEN -(quantity * price + fee) ELSE quantity * price - fee END AS cash_delta
    FROM trading.fills WHERE fill_time <= :t
), held AS (SELECT symbol, sum(signed) AS qty FROM f GROUP BY symbol)
SELECT (SELECT starting_cash FROM trading.account WHERE id = 'paper')
     + coalesce((SELECT sum(cash_delta) FROM f), 0)
     + coalesce((SELECT sum(h.qty * (SELECT k.price FROM market.ticks k WHERE k.symbol = h.symbol
                                      AND k.trade_time <= :t ORDER BY k.trade_time DESC, k.trade_id DESC LIMIT 1))
                 FROM held h), 0)
"""
AS_OF = """
SELECT greatest((SELECT max(fill_time) FROM trading.fills),
                (SELECT max(k.trade_time) FROM market.ticks k
                 WHERE k.symbol IN (SELECT DISTINCT symbol FROM trading.fills)))
"""
TOTALS = """
SELECT count(*) AS fills, sum(realized_pnl) AS realized, sum(fee) AS fees,
       count(*) FILTER (WHERE realized_pnl <> 0) AS closed,
       count(*) FILTER (WHERE realized_pnl <> 0 AND realized_pnl > fee) AS wins
FROM trading.fills
"""


def _fill(engine: Engine, symbol: str, side: Signal, qty: float, at: datetime) -> None:
    with engine.begin() as conn:
        iid = insert_intent(
            conn,
            Intent(symbol, side, qty, 1.0, 0.9 if side is Signal.BUY else 0.1, at),
            model_name="test",
            model_version="1",
            feature_time=at,
            tick_receive_ns=None,
        )
    assert execute_intent(engine, str(iid), PARAMS, at + timedelta(seconds=5)).outcome == "filled"


def _trading_callback(settings: Settings) -> dict[str, Any]:
    """The Trading page's refresh, as the browser asks for it (Dash's endpoint, with the login)."""
    from dashboard.app import create_app

    outs = ["trading-error", "trading-cards", "equity-graph", "equity-note", "positions", "bot-state"]
    props = ["children", "children", "figure", "children", "children", "children"]
    body = {
        "output": "..trading-error.children...trading-cards.children...equity-graph.figure..."
        "equity-note.children...positions.children...bot-state.children..",
        "outputs": [{"id": i, "property": p} for i, p in zip(outs, props, strict=True)],
        "inputs": [{"id": "tick", "property": "n_intervals", "value": 1}],
        "changedPropIds": ["tick.n_intervals"],
        "state": [],
    }
    login = f"{settings.dashboard_user}:{settings.dashboard_password.get_secret_value()}"
    client = create_app(settings).server.test_client()
    resp = client.post(
        "/_dash-update-component",
        json=body,
        headers={"Authorization": "Basic " + base64.b64encode(login.encode()).decode()},
    )
    assert resp.status_code == 200, resp.get_data(as_text=True)[:500]
    out: dict[str, Any] = resp.get_json()["response"]
    assert not out["trading-error"]["children"], out["trading-error"]
    return out


def _cards(out: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """kpi key -> (shown text, exact data-value)."""
    cards = {}
    for card in out["trading-cards"]["children"]:
        value = card["props"]["children"][1]["props"]
        cards[card["props"]["id"].removeprefix("kpi-")] = (value["children"], value.get("data-value", ""))
    return cards


def _array(v: Any) -> np.ndarray:
    """A Plotly array as sent to the browser (a list, or base64 typed data)."""
    if isinstance(v, dict) and "bdata" in v:
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
    return np.asarray(v)


def _curve(out: dict[str, Any]) -> tuple[list[datetime], np.ndarray]:
    trace = out["equity-graph"]["figure"]["data"][0]
    times = [pd.Timestamp(str(t)).to_pydatetime() for t in _array(trace["x"])]
    times = [t if t.tzinfo else t.replace(tzinfo=UTC) for t in times]
    return times, _array(trace["y"]).astype(float)


def _sql_equity(engine: Engine, t: datetime) -> float:
    with engine.connect() as conn:
        return float(conn.execute(text(EQUITY_AT), {"t": t}).scalar_one())


def test_tiles_and_curve_equal_sql_on_the_tables(
    clean_book: Engine, spot_trades: dict[str, list[Any]], stack_settings: Settings
) -> None:
    # a book with wins, a loss, a partial close, two symbols and open positions at the end
    plan = [
        ("BTCUSDT", Signal.BUY, 0.5, 0),
        ("ETHUSDT", Signal.BUY, 4.0, 40),
        ("BTCUSDT", Signal.SELL, 0.2, 95),
        ("ETHUSDT", Signal.SELL, 4.0, 150),
        ("BTCUSDT", Signal.SELL, 0.5, 230),  # closes 0.3, opens a 0.2 short
        ("ETHUSDT", Signal.SELL, 2.0, 300),
        ("ETHUSDT", Signal.BUY, 2.0, 390),
        ("BTCUSDT", Signal.BUY, 0.2, 420),
        ("BTCUSDT", Signal.BUY, 0.3, 480),
    ]
    for symbol, side, qty, s in plan:
        _fill(clean_book, symbol, side, qty, T0 + timedelta(seconds=s))
    out = _trading_callback(stack_settings)
    cards = _cards(out)
    with clean_book.connect() as conn:
        totals = conn.execute(text(TOTALS)).mappings().one()
        as_of = conn.execute(text(AS_OF)).scalar_one()
    equity = _sql_equity(clean_book, as_of)
    cash0 = PARAMS.starting_cash

    assert float(cards["equity"][1]) == pytest.approx(equity, abs=1e-6)
    assert float(cards["net-pnl"][1]) == pytest.approx(equity - cash0, abs=1e-6)
    assert float(cards["realized"][1]) == pytest.approx(float(totals["realized"]), abs=1e-6)
    assert float(cards["fees"][1]) == pytest.approx(float(totals["fees"]), abs=1e-9)
    # net = realised - fees + unrealised: the three tiles add up
    unrealized = float(cards["unrealized"][1])
    assert float(totals["realized"]) - float(totals["fees"]) + unrealized == pytest.approx(
        equity - cash0, abs=1e-6
    )
    assert int(cards["fills"][0]) == totals["fills"] == len(plan)
    assert totals["closed"] >= 3
    assert 0 < totals["wins"] < totals["closed"], "the plan should hold a win and a loss"
    assert float(cards["win-rate"][1]) == pytest.approx(totals["wins"] / totals["closed"])
    assert cards["win-rate"][0] == f"{100 * totals['wins'] / totals['closed']:.1f} %"

    # the curve: equity(t) at each of its times equals SQL; it starts at the starting cash, ends at the tile
    times, ys = _curve(out)
    assert len(times) > 100
    assert times[-1] == as_of
    assert ys[0] == pytest.approx(cash0, abs=1e-9)
    assert ys[-1] == pytest.approx(float(cards["equity"][1]), abs=1e-9)
    sql_curve = [_sql_equity(clean_book, t) for t in times]
    off = [(t, y, v) for t, y, v in zip(times, ys, sql_curve, strict=True) if abs(y - v) > 1e-6]
    assert not off, f"{len(off)} of {len(times)} curve points differ from SQL, first: {off[0]}"

    # max drawdown: the largest fall of the SQL curve below its running peak (starting at the cash)
    peak, worst = cash0, 0.0
    for v in sql_curve:
        peak = max(peak, v)
        worst = max(worst, (peak - v) / peak)
    assert worst > 0, "the curve falls somewhere in this book"
    assert float(cards["drawdown"][1]) == pytest.approx(worst, rel=1e-6)
    assert cards["drawdown"][0] != "0.00 %"
    note = out["equity-note"]["children"]
    assert f"{as_of:%Y-%m-%d %H:%M:%S}" in note


def test_refreshes_agree_and_net_pnl_moves_with_the_mark_only(
    clean_book: Engine, spot_trades: dict[str, list[Any]], stack_settings: Settings
) -> None:
    """Two refreshes with nothing new agree to the last digit; what separates net PnL from the
    realised part is the open position at the newest trade, which the note names."""
    _fill(clean_book, "BTCUSDT", Signal.BUY, 0.5, T0)
    out = _trading_callback(stack_settings)
    first, second = _cards(out), _cards(_trading_callback(stack_settings))
    assert first == second
    assert first["win-rate"][0] == "—"  # nothing closed yet
    with clean_book.connect() as conn:
        mark = conn.execute(
            text(
                "SELECT price FROM market.ticks WHERE symbol = 'BTCUSDT' "
                "ORDER BY trade_time DESC, trade_id DESC LIMIT 1"
            )
        ).scalar_one()
        price, fee = conn.execute(text("SELECT price, fee FROM trading.fills")).one()
    assert float(first["unrealized"][1]) == pytest.approx(0.5 * (float(mark) - price), abs=1e-6)
    assert float(first["net-pnl"][1]) == pytest.approx(0.5 * (float(mark) - price) - fee, abs=1e-6)
    assert f"BTCUSDT {float(mark):,.2f}" in out["equity-note"]["children"]


def test_an_empty_book_shows_the_starting_cash_and_no_win_rate(
    clean_book: Engine, stack_settings: Settings
) -> None:
    out = _trading_callback(stack_settings)
    cards = _cards(out)
    assert float(cards["equity"][1]) == stack_settings.starting_cash
    assert cards["win-rate"] == ("—", "")
    assert cards["drawdown"][0] == "0.00 %"
    assert "no fills yet" in str(out["equity-graph"]["figure"])
