"""Issue 23 item 4: one trading rule, hft.trading.strategy.signal_from_prob, for the backtest and the bot;
it trades only when the expected edge beats the round trip."""

from __future__ import annotations

import math

import numpy as np
import pytest

import hft.ml.metrics as M
import hft.trading.bot as bot
from hft.trading import strategy
from hft.trading.strategy import Signal, expected_edge_bps, expected_move_bps, signal_from_prob

COSTS = M.Costs(fee_bps=10.0, slippage_bps=1.0, buy_threshold=0.55, sell_threshold=0.45)


def test_the_backtest_and_the_bot_call_the_same_rule() -> None:
    assert bot.signal_from_prob is strategy.signal_from_prob
    assert M.signal_from_prob is strategy.signal_from_prob


def test_backtest_sides_are_the_rule_applied_to_every_decision(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(1)
    p = rng.uniform(0.3, 0.7, 400)
    moves = rng.uniform(5, 400, 400)
    fwd = rng.normal(0, 0.01, 400)
    times = np.arange(400, dtype=np.int64) * 900 * 10**9
    expected = [
        {Signal.BUY: 1, Signal.SELL: -1, Signal.HOLD: 0}[
            signal_from_prob(pi, 0.55, 0.45, move_bps=mi, cost_bps=COSTS.round_trip_bps)
        ]
        for pi, mi in zip(p, moves, strict=True)
    ]
    np.testing.assert_array_equal(M.trade_sides(p, COSTS, moves), expected)
    calls: list[float] = []

    def spy(prob: float, *a: object, **k: object) -> Signal:
        calls.append(prob)
        return strategy.signal_from_prob(prob, *a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(M, "signal_from_prob", spy)
    bt = M.backtest(p, fwd, times, COSTS, moves)
    assert len(calls) == 400
    assert bt["trades"] == int(np.count_nonzero(expected))
    assert bt["edge_filter"] == 1.0


def test_a_trade_needs_an_expected_edge_above_the_round_trip() -> None:
    assert COSTS.round_trip_bps == 22.0
    # p = 0.6 over an expected 100 bps move: edge 20 bps < 22 bps round trip -> hold
    assert expected_edge_bps(0.6, 100.0) == pytest.approx(20.0)
    assert signal_from_prob(0.6, 0.55, 0.45, move_bps=100.0, cost_bps=22.0) is Signal.HOLD
    assert signal_from_prob(0.6, 0.55, 0.45, move_bps=120.0, cost_bps=22.0) is Signal.BUY
    assert signal_from_prob(0.4, 0.55, 0.45, move_bps=120.0, cost_bps=22.0) is Signal.SELL
    assert signal_from_prob(0.5, 0.55, 0.45, move_bps=1e6, cost_bps=22.0) is Signal.HOLD
    assert signal_from_prob(0.6, 0.55, 0.45, move_bps=math.nan, cost_bps=22.0) is Signal.HOLD
    # without an expected move: the thresholds alone (what callers that pass none keep getting)
    assert signal_from_prob(0.6, 0.55, 0.45) is Signal.BUY
    assert signal_from_prob(0.45, 0.55, 0.45) is Signal.SELL
    # E|r_h| of a random walk: sqrt(2/pi) sigma sqrt(h)
    assert expected_move_bps(0.001, 4) == pytest.approx(math.sqrt(2 / math.pi) * 0.001 * 2 * 1e4)
    assert math.isnan(expected_move_bps(math.nan, 1))


def test_without_moves_the_backtest_trades_on_thresholds_as_before() -> None:
    p = np.array([0.6, 0.5, 0.4, 0.56])
    fwd = np.array([0.01, 0.01, -0.01, -0.002])
    times = np.arange(4, dtype=np.int64)
    bt = M.backtest(p, fwd, times, COSTS)
    assert bt["trades"] == 3
    assert bt["edge_filter"] == 0.0
    filtered = M.backtest(p, fwd, times, COSTS, np.array([10.0, 10.0, 500.0, 500.0]))
    assert filtered["trades"] == 2  # the 0.6 call on a 10 bps move cannot pay 22 bps


def _bot(**overrides: object) -> bot.TradingBot:
    from hft.config import Settings

    s = Settings().model_copy(update={"buy_threshold": 0.55, "sell_threshold": 0.45, **overrides})

    def move(symbol: str, prediction: dict[str, object]) -> float:
        return float(prediction["move"])  # type: ignore[arg-type]

    return bot.TradingBot(s, None, lambda _: {}, lambda _: None, lambda: 0, move_bps=move)  # type: ignore[arg-type]


def test_the_bot_signals_exactly_as_the_backtest_trades() -> None:
    """Issue 23: the bot's decision step and `hft evaluate`'s backtest, same probabilities and moves,
    same settings' costs: the same sides, decision by decision."""
    b = _bot()
    costs = M.Costs.from_settings(b.s)
    assert b.cost_bps == costs.round_trip_bps == 22.0
    rng = np.random.default_rng(7)
    p = rng.uniform(0.2, 0.8, 600)
    moves = rng.uniform(5, 300, 600)
    moves[::50] = math.nan  # no volatility estimate: no trade, in both
    sides = M.trade_sides(p, costs, moves)
    bot_sides = [
        {Signal.BUY: 1, Signal.SELL: -1, Signal.HOLD: 0}[b.signal_for("BTCUSDT", {"prob_up": pi, "move": mi})]
        for pi, mi in zip(p, moves, strict=True)
    ]
    np.testing.assert_array_equal(sides, bot_sides)
    assert (
        0
        < np.count_nonzero(sides)
        < np.count_nonzero(M.trade_sides(p, M.Costs(**{**costs.__dict__, "edge_filter": False})))
    )
    # p = 0.6 at the thresholds would buy; with a 1-bar 15 bps expected move it cannot pay 22 bps
    assert b.signal_for("BTCUSDT", {"prob_up": 0.6, "move": 15.0}) is Signal.HOLD
    assert b.signal_for("BTCUSDT", {"prob_up": 0.7, "move": 100.0}) is Signal.BUY


def test_forcing_thresholds_trade_without_the_edge_rule() -> None:
    assert strategy.thresholds_force(0.0, 0.0)
    assert not strategy.thresholds_force(0.55, 0.45)
    assert signal_from_prob(0.5, 0.0, 0.0, move_bps=1.0, cost_bps=22.0) is Signal.BUY
    b = _bot(buy_threshold=0.0, sell_threshold=0.0)
    assert b.signal_for("BTCUSDT", {"prob_up": 0.5, "move": math.nan}) is Signal.BUY


def test_the_models_move_comes_from_its_label_configuration() -> None:
    vol = 0.002  # 20 bps a bar
    assert strategy.model_move_bps(vol, {}) == pytest.approx(expected_move_bps(vol, 1))
    assert strategy.model_move_bps(vol, {"horizon": "16"}) == pytest.approx(4 * expected_move_bps(vol, 1))
    tags = {"horizon": "16", "label_kind": "barrier", "barrier_k": "1.0", "barrier_min_bps": "22"}
    assert strategy.model_move_bps(vol, tags) == pytest.approx(80.0)
    assert strategy.model_move_bps(0.0001, tags) == pytest.approx(22.0)
    assert math.isnan(strategy.model_move_bps(None, tags))
    assert math.isnan(strategy.model_move_bps(vol, {"horizon": "x"}))


def test_the_bot_process_sizes_the_move_by_the_models_tags_and_the_online_vol() -> None:
    """BotProcess._move_bps: vol_64 of the online row x the version's horizon (what evaluate's backtest uses)."""
    from datetime import UTC, datetime

    from hft.config import Settings
    from hft.trading.runner import BotProcess

    class Online:
        def latest(self, symbol: str) -> tuple[datetime, dict[str, float]]:
            return datetime.now(UTC), {"vol_64": 0.002}

    proc = object.__new__(BotProcess)
    proc.s = Settings()
    proc._online = Online()
    proc._labels = {("hft-ensemble", "7"): {"horizon": "4", "label_kind": "direction"}}
    pred = {"prob_up": 0.6, "model_name": "hft-ensemble", "model_version": "7"}
    assert proc._move_bps("BTCUSDT", pred) == pytest.approx(expected_move_bps(0.002, 4))
    # a version without tags (a model from before issue 23 item 1): the 1-bar direction
    proc._labels[("hft-ensemble", "1")] = {}
    assert proc._move_bps("BTCUSDT", {**pred, "model_version": "1"}) == pytest.approx(
        expected_move_bps(0.002, 1)
    )
