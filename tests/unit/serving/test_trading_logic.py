"""Risk limits, trading states, paper fills and PnL math (pure logic, no services)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hft.trading.fills import Position, apply_fill, simulate_fill
from hft.trading.pnl import TimedFill, max_drawdown, report
from hft.trading.strategy import RiskLimits, Signal, TradingState, decide, signal_from_prob

T0 = datetime(2025, 1, 1, tzinfo=UTC)
LIMITS = RiskLimits(
    order_notional=1000.0, max_position_notional=2500.0, cooldown_s=60.0, daily_loss_limit=500.0
)


def _decide(**kw):  # type: ignore[no-untyped-def]
    base = {
        "symbol": "BTCUSDT",
        "signal": Signal.BUY,
        "prob_up": 0.7,
        "price": 100.0,
        "position_qty": 0.0,
        "state": TradingState.ACTIVE,
        "last_intent_at": None,
        "now": T0,
        "daily_pnl": 0.0,
        "limits": LIMITS,
    }
    base.update(kw)
    return decide(**base)


@pytest.mark.parametrize(
    ("prob", "expected"),
    [(0.9, Signal.BUY), (0.55, Signal.BUY), (0.5, Signal.HOLD), (0.45, Signal.SELL), (0.1, Signal.SELL)],
)
def test_signal_thresholds_split_buy_hold_sell(prob: float, expected: Signal) -> None:
    assert signal_from_prob(prob, 0.55, 0.45) is expected


def test_signal_rejects_crossed_thresholds() -> None:
    with pytest.raises(ValueError, match="above"):
        signal_from_prob(0.5, 0.4, 0.6)


def test_buy_signal_sizes_order_notional() -> None:
    d = _decide()
    assert d.intent is not None
    assert d.intent.side is Signal.BUY
    assert d.intent.quantity == pytest.approx(10.0)
    assert d.intent.notional == pytest.approx(1000.0)


def test_buy_is_capped_by_position_limit() -> None:
    d = _decide(position_qty=20.0)  # 2000 held, room 500
    assert d.intent is not None
    assert d.intent.notional == pytest.approx(500.0)
    full = _decide(position_qty=25.0)
    assert full.intent is None
    assert full.reason == "position_limit"


def test_cooldown_blocks_a_second_intent_until_it_expires() -> None:
    assert _decide(last_intent_at=T0 - timedelta(seconds=30)).reason == "cooldown"
    assert _decide(last_intent_at=T0 - timedelta(seconds=61)).intent is not None


def test_halted_state_sends_nothing() -> None:
    d = _decide(state=TradingState.HALTED)
    assert d.intent is None
    assert d.reason == "halted"
    assert d.state is TradingState.HALTED


def test_daily_loss_limit_halts_trading() -> None:
    d = _decide(daily_pnl=-500.0)
    assert d.intent is None
    assert d.reason == "daily_loss_limit"
    assert d.state is TradingState.HALTED
    assert _decide(daily_pnl=-499.0).intent is not None


def test_reducing_state_only_sells_down() -> None:
    assert _decide(state=TradingState.REDUCING).reason == "reducing"
    d = _decide(state=TradingState.REDUCING, signal=Signal.SELL, position_qty=3.0)
    assert d.intent is not None
    assert d.intent.side is Signal.SELL
    assert d.intent.quantity == pytest.approx(3.0)


def test_sell_when_flat_is_not_a_short() -> None:
    assert _decide(signal=Signal.SELL).reason == "flat"


def test_sell_closes_the_whole_position() -> None:
    # issue 23: a sell is the lifecycle's exit (hft.trading.strategy.lifecycle_step), the whole
    # position, even one larger than order_notional (bought before the lifecycle)
    d = _decide(signal=Signal.SELL, position_qty=25.0)
    assert d.intent is not None
    assert d.intent.quantity == pytest.approx(25.0)


def test_hold_sends_nothing() -> None:
    assert _decide(signal=Signal.HOLD).reason == "hold"


def test_fill_slips_against_the_taker_and_charges_fee() -> None:
    buy = simulate_fill(Signal.BUY, 2.0, 100.0, slippage_bps=10.0, fee_bps=10.0)
    assert buy.price == pytest.approx(100.1)
    assert buy.fee == pytest.approx(2 * 100.1 * 0.001)
    assert buy.cash_delta == pytest.approx(-(200.2 + 0.2002))
    sell = simulate_fill(Signal.SELL, 2.0, 100.0, slippage_bps=10.0, fee_bps=10.0)
    assert sell.price == pytest.approx(99.9)
    assert sell.cash_delta == pytest.approx(199.8 - 0.1998)


def test_fill_rejects_hold_and_nonpositive_quantity() -> None:
    with pytest.raises(ValueError, match="side"):
        simulate_fill(Signal.HOLD, 1.0, 100.0, slippage_bps=0, fee_bps=0)
    with pytest.raises(ValueError, match="positive"):
        simulate_fill(Signal.BUY, 0.0, 100.0, slippage_bps=0, fee_bps=0)


def test_average_cost_position_realises_pnl_on_reduction() -> None:
    pos = Position("BTCUSDT")
    pos, r1 = apply_fill(pos, simulate_fill(Signal.BUY, 1.0, 100.0, slippage_bps=0, fee_bps=0))
    pos, r2 = apply_fill(pos, simulate_fill(Signal.BUY, 1.0, 110.0, slippage_bps=0, fee_bps=0))
    assert (r1, r2) == (0.0, 0.0)
    assert pos.quantity == pytest.approx(2.0)
    assert pos.avg_price == pytest.approx(105.0)
    pos, r3 = apply_fill(pos, simulate_fill(Signal.SELL, 1.5, 120.0, slippage_bps=0, fee_bps=0))
    assert r3 == pytest.approx(1.5 * 15.0)
    assert pos.quantity == pytest.approx(0.5)
    assert pos.avg_price == pytest.approx(105.0)
    pos, _ = apply_fill(pos, simulate_fill(Signal.SELL, 1.0, 90.0, slippage_bps=0, fee_bps=0))
    assert pos.quantity == pytest.approx(-0.5)
    assert pos.avg_price == pytest.approx(90.0)


def test_report_matches_hand_computed_round_trip() -> None:
    f1 = simulate_fill(Signal.BUY, 10.0, 100.0, slippage_bps=0, fee_bps=10.0)  # pays 1000 + 1
    f2 = simulate_fill(Signal.SELL, 10.0, 110.0, slippage_bps=0, fee_bps=10.0)  # gets 1100 - 1.1
    fills = [TimedFill("X", T0, f1), TimedFill("X", T0 + timedelta(minutes=15), f2)]
    r = report(fills, starting_cash=10_000.0, marks={"X": 110.0}, as_of=T0 + timedelta(hours=1))
    assert r["realized_pnl"] == pytest.approx(100.0)
    assert r["fees_paid"] == pytest.approx(2.1)
    assert r["net_pnl"] == pytest.approx(97.9)
    assert r["win_rate"] == pytest.approx(1.0)
    assert r["closed_trades"] == 1
    assert r["turnover"] == pytest.approx(2100.0)
    assert r["unrealized_pnl"] == pytest.approx(0.0)


def test_report_marks_open_position_unrealised() -> None:
    f1 = simulate_fill(Signal.BUY, 1.0, 100.0, slippage_bps=0, fee_bps=0)
    r = report(
        [TimedFill("X", T0, f1)], starting_cash=1000.0, marks={"X": 90.0}, as_of=T0 + timedelta(minutes=1)
    )
    assert r["unrealized_pnl"] == pytest.approx(-10.0)
    assert r["equity"] == pytest.approx(990.0)
    assert r["max_drawdown"] == pytest.approx(0.01)


def test_max_drawdown_from_running_peak() -> None:
    assert max_drawdown([100, 120, 90, 130, 117]) == pytest.approx(0.25)
    assert max_drawdown([100, 101, 102]) == 0.0
