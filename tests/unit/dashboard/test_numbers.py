"""The pure parts of the dashboard's numbers: the curve's grid, drawdown, tiles, chart scaling, load."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta

import pytest

from hft.reporting import prometheus
from hft.reporting.book import Book, drawdown, grid

T = datetime(2024, 8, 9, tzinfo=UTC)


def test_grid_is_regular_and_ends_exactly_at_the_end() -> None:
    times, step = grid(T, T + timedelta(seconds=10), points=5)
    assert step == timedelta(seconds=2.5)
    assert times == [T + timedelta(seconds=2.5 * k) for k in range(5)]
    times, step = grid(T, T + timedelta(seconds=10, microseconds=1), points=5)
    assert times[-1] == T + timedelta(seconds=10, microseconds=1)
    assert all(b > a for a, b in itertools.pairwise(times))
    assert grid(T, T) == ([T], timedelta(0))


def test_drawdown_counts_a_small_fall_and_starts_from_the_first_peak() -> None:
    frac, quote = drawdown([99_999.0, 99_996.0, 99_998.0], first_peak=100_000.0)
    assert quote == pytest.approx(4.0)
    assert frac == pytest.approx(4.0 / 100_000.0)
    assert drawdown([100.0, 110.0, 99.0, 120.0], 100.0) == pytest.approx((11.0 / 110.0, 11.0))
    assert drawdown([101.0, 102.0], 100.0) == (0.0, 0.0)


def _book(**kw: object) -> Book:
    base = {
        "starting_cash": 100_000.0,
        "as_of": None,
        "cash": 100_000.0,
        "equity": 100_000.0,
        "realized_pnl": 0.0,
        "fees_paid": 0.0,
        "unrealized_pnl": 0.0,
        "net_pnl": 0.0,
        "fills": 0,
        "turnover": 0.0,
        "closed_trades": 0,
        "wins": 0,
        "win_rate": None,
        "max_drawdown": 0.0,
        "max_drawdown_quote": 0.0,
        "sharpe": None,
    }
    base.update(kw)
    return Book(**base)  # type: ignore[arg-type]


def _card_text(cards: list, key: str) -> tuple[str, str]:  # type: ignore[type-arg]
    card = next(c for c in cards if c.id == f"kpi-{key}")
    value = card.children[1]
    return value.children, getattr(value, "data-value")


def test_tiles_say_no_closed_trade_and_never_round_a_fall_to_zero() -> None:
    from dashboard.pages import trading_cards

    cards = trading_cards(_book(fills=1, max_drawdown=3.2e-5, max_drawdown_quote=3.2))
    assert _card_text(cards, "win-rate") == ("—", "")
    shown, exact = _card_text(cards, "drawdown")
    assert shown == "0.0032 %"
    assert float(exact) == 3.2e-5
    cards = trading_cards(_book(closed_trades=4, wins=1, win_rate=0.25))
    assert _card_text(cards, "win-rate")[0] == "25.0 %"


def test_a_chart_scales_to_its_finite_values() -> None:
    from dashboard.pages import panel_figure

    panel = next(p for p in prometheus.PANELS if p.key == "tick_to_signal_p99")
    times = [T + timedelta(seconds=15 * k) for k in range(6)]
    series = [prometheus.Series({}, times, [math.nan, 40.0, math.inf, 4950.0, math.nan, 12.0])]
    fig = panel_figure(panel, series)
    lo, hi = fig.layout.yaxis.range
    assert lo == 0.0
    assert hi >= 4950.0
    assert list(fig.data[0].y) == [None, 40.0, None, 4950.0, None, 12.0]
    assert fig.data[0].mode == "lines+markers"  # three points: drawn as points too
    empty = panel_figure(panel, [prometheus.Series({}, times, [math.nan] * 6)])
    assert "no samples" in str(empty.layout.annotations[0].text)
    assert prometheus.y_range([prometheus.Series({}, times, [5.0, 5.0])]) == pytest.approx((0.0, 5.4))
    assert prometheus.y_range([prometheus.Series({}, times, [-2.0, 3.0])]) == pytest.approx((-2.4, 3.4))


def test_the_load_note_names_ticks_per_second_and_the_benchmark() -> None:
    from dashboard.pages import load_note

    note = load_note(
        prometheus.Load(900.0, "feature_calculator_ticks_total", 38.2, 512.0, 0.7, {"tick_to_signal": 2}), 15
    )
    text = str(note)
    assert "38.2 ticks/s" in text
    assert "benchmark table" in text
    assert "no process reports" in str(load_note(prometheus.Load(900.0, None, None, None, None), 15))


def test_the_trade_count_reason_counts_until_the_newest_kline_leaves_the_window() -> None:
    from hft.reporting.market import trade_count_reason

    # newest first: 5 bars from trades, then 15 klines without a count
    reason = trade_count_reason([True] * 5 + [False] * 15, "15m")
    assert reason.startswith("15 of the last 20 15m bars have no trade count")
    assert reason.endswith("after 15 more bars from trades")
    assert trade_count_reason([False] * 20, "15m").endswith("after 20 more bars from trades")
    assert trade_count_reason([True] * 19 + [False], "15m").endswith("after 1 more bar from trades")
    assert "rewritten" in trade_count_reason([True] * 20, "15m")
