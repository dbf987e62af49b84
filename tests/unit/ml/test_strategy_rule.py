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
    assert bt["long_short"]["trades"] == int(np.count_nonzero(expected))
    assert 0 < bt["trades"] <= int(np.count_nonzero(np.asarray(expected) > 0))  # the long-only book
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
    assert bt["long_short"]["trades"] == 3
    assert bt["trades"] == 2  # the bot's book: long-only (0.4 opens no short)
    assert bt["edge_filter"] == 0.0
    filtered = M.backtest(p, fwd, times, COSTS, np.array([10.0, 10.0, 500.0, 500.0]))
    assert filtered["long_short"]["trades"] == 2  # the 0.6 call on a 10 bps move cannot pay 22 bps
    assert filtered["trades"] == 1


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


# --- issue 23: one trade lifecycle (entry by the rule, time exit at the model's horizon) ---------

BAR_NS = 15 * 60 * 10**9


def _bars(n: int = 400, seed: int = 11) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Bar close times, closes (a random walk), probabilities and expected moves of one symbol."""
    rng = np.random.default_rng(seed)
    times = np.datetime64("2025-03-01T00:15", "ns").astype(np.int64) + np.arange(n, dtype=np.int64) * BAR_NS
    close = 60_000 * np.exp(np.cumsum(rng.normal(0, 0.003, n)))
    p = rng.uniform(0.25, 0.8, n)
    moves = rng.uniform(20, 200, n)
    return times, close, p, moves


def _held_return(close: np.ndarray, h: int) -> np.ndarray:
    fwd = np.full(len(close), np.nan)
    fwd[:-h] = close[h:] / close[:-h] - 1.0
    return fwd


def bot_lifecycle_trades(
    b: bot.TradingBot, times: np.ndarray, p: np.ndarray, moves: np.ndarray, h: int
) -> list[tuple[int, int]]:
    """(entry, exit) bar times of the bot's decision path: signal_for, then lifecycle_step, bar by bar.

    The bot's clock is the bar's close plus the time since its last tick (here 3-40 ms).
    """
    trades: list[tuple[int, int]] = []
    opened: int | None = None
    for i, t in enumerate(times.tolist()):
        sig = b.signal_for("BTCUSDT", {"prob_up": float(p[i]), "move": float(moves[i])})
        now = int(t) + (3 + 37 * (i % 2)) * 1_000_000
        action, _ = strategy.lifecycle_step(sig, opened_ns=opened, now_ns=now, horizon_bars=h, bar_ns=BAR_NS)
        if action is Signal.BUY:
            opened = now
        elif action is Signal.SELL:
            assert opened is not None
            trades.append((opened, now))
            opened = None
    # rounded back to bar close times (the jitter above)
    return [(e - e % BAR_NS, x - x % BAR_NS) for e, x in trades]


@pytest.mark.parametrize("h", [1, 4])
def test_the_backtest_and_the_bot_enter_and_exit_on_the_same_bars(h: int) -> None:
    """`hft evaluate`'s backtest and the bot's decision path, fed one sequence of bars (times, closes,
    probabilities, expected moves), open and close the same positions on the same bars: long-only,
    one at a time, closed after the model's horizon whatever the signal then."""
    times, close, p, moves = _bars()
    b = _bot()
    costs = M.Costs.from_settings(b.s)
    bt = M.backtest(
        p, _held_return(close, h), times, costs, moves, h * BAR_NS, np.array(["BTCUSDT"] * len(p))
    )
    backtest_trades = list(zip(bt["entry_times"], bt["exit_times"], strict=True))
    bot_trades = bot_lifecycle_trades(b, times, p, moves, h)
    # the last position may still be open at the end of the bars: the backtest closes it at its due bar
    assert backtest_trades[: len(bot_trades)] == bot_trades
    assert len(backtest_trades) - len(bot_trades) in (0, 1)
    assert len(bot_trades) >= 10
    assert bt["short_trades"] == 0
    assert bt["long_trades"] == bt["trades"] == len(backtest_trades)
    for entry, exit_ in bot_trades:
        assert exit_ - entry == h * BAR_NS  # the time exit, not a sell signal
    # sells signalled while flat or holding open/close nothing: some exits fall on bars whose own
    # signal was not a sell, and the book never shorts
    sides = M.trade_sides(p, costs, moves)
    exit_idx = [int((x - times[0]) // BAR_NS) for _, x in bot_trades]
    assert any(sides[i] != -1 for i in exit_idx)
    assert (sides == -1).sum() > 0
    # the PnL is the held return of each entry, net of the round trip
    entry_idx = [int((e - times[0]) // BAR_NS) for e, _ in backtest_trades]
    net = (_held_return(close, h)[entry_idx] * 1e4 - costs.round_trip_bps) / 1e4 * costs.notional
    assert bt["net_pnl_after_fees"] == pytest.approx(float(net.sum()))


def test_the_lifecycle_step() -> None:
    step, buy, sell, hold = strategy.lifecycle_step, Signal.BUY, Signal.SELL, Signal.HOLD
    kw = {"horizon_bars": 4, "bar_ns": BAR_NS}
    assert step(buy, opened_ns=None, now_ns=0, **kw) == (buy, strategy.Step.ENTRY)
    assert step(sell, opened_ns=None, now_ns=0, **kw) == (hold, strategy.Step.NO_SHORT)
    assert step(hold, opened_ns=None, now_ns=0, **kw) == (hold, strategy.Step.FLAT)
    # held 3 bars: a sell signal closes nothing; 4 bars (a few ms early or late): closed, whatever the signal
    assert step(sell, opened_ns=0, now_ns=3 * BAR_NS, **kw) == (hold, strategy.Step.HOLDING)
    assert step(buy, opened_ns=5_000_000, now_ns=4 * BAR_NS, **kw) == (sell, strategy.Step.HORIZON_EXIT)
    assert step(hold, opened_ns=0, now_ns=4 * BAR_NS + 40_000_000, **kw) == (sell, strategy.Step.HORIZON_EXIT)
    assert step(hold, opened_ns=0, now_ns=9 * BAR_NS, exiting=True, **kw) == (hold, strategy.Step.EXITING)
    # a gap in the decisions: the position still closes at its due bar
    trades = strategy.simulate_book([0, BAR_NS, 9 * BAR_NS], [buy, hold, buy], 4, BAR_NS)
    assert [(t.entry_ns, t.exit_ns) for t in trades] == [(0, 4 * BAR_NS), (9 * BAR_NS, 13 * BAR_NS)]
