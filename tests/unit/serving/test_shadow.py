"""The live record's arithmetic: outcomes from the next bar, accuracy, ROC-AUC, paper PnL, the gate."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from hft.trading.shadow import ShadowStats, gate, stats, with_outcomes

T0 = pd.Timestamp("2025-01-01", tz="UTC")
STEP = pd.Timedelta("15min")


def _frame(closes: list[float], probs: dict[str, list[float]], symbol: str = "BTCUSDT") -> pd.DataFrame:
    rows = []
    for version, ps in probs.items():
        for i, (c, p) in enumerate(zip(closes, ps, strict=True)):
            role = "champion" if version == "1" else "challenger"
            rows.append((symbol, "15m", T0 + i * STEP, "m", version, role, p, c))
    cols = ["symbol", "interval", "open_time", "model_name", "model_version", "role", "prob_up", "close"]
    return pd.DataFrame(rows, columns=cols)


def test_a_bar_is_judged_by_the_next_bars_close_and_the_last_bar_waits() -> None:
    f = _frame([100.0, 101.0, 100.5, 100.5], {"1": [0.6, 0.4, 0.5, 0.7]})
    judged = with_outcomes(f)
    assert len(judged) == 3  # the last bar has no next bar yet
    assert judged["ret"].tolist() == pytest.approx([0.01, 100.5 / 101 - 1, 0.0])
    assert judged["up"].tolist() == [True, False, False]  # a flat bar is not up, as the label


def test_a_gap_in_the_record_leaves_the_bar_before_it_unjudged() -> None:
    f = _frame([100.0, 101.0, 102.0], {"1": [0.6, 0.6, 0.6]})
    f = f[f["open_time"] != T0 + STEP]  # the middle bar was never scored
    assert with_outcomes(f).empty


def test_stats_count_accuracy_auc_and_paper_pnl_after_costs_per_version() -> None:
    closes = [100.0, 101.0, 100.0, 101.0, 100.0]
    f = _frame(closes, {"1": [0.7, 0.3, 0.7, 0.3, 0.5], "2": [0.3, 0.7, 0.5, 0.5, 0.5]})
    by = {s.model_version: s for s in stats(f, 0.55, 0.45, cost_bps_per_side=11.0, notional=1000.0)}
    one, two = by["1"], by["2"]
    assert (one.decisions, one.trades, one.role) == (4, 4, "champion")
    assert one.accuracy == 1.0
    assert one.roc_auc == 1.0
    rets = [0.01, -0.0099009901, 0.01, -0.0099009901]
    gross = [abs(r) for r in rets]  # always on the right side
    assert one.gross_edge_bps == pytest.approx(sum(gross) / 4 * 1e4)
    assert one.net_pnl == pytest.approx(sum(g - 22e-4 for g in gross) * 1000.0)
    assert two.trades == 2  # 0.5 is neither a buy nor a sell
    assert two.accuracy == 0.25  # wrong, wrong, 0.5 says "not up" on an up bar, right on a down bar
    assert two.net_pnl < 0
    assert two.since == T0.to_pydatetime()


def _s(version: str, role: str, n: int, auc: float, pnl: float) -> ShadowStats:
    return ShadowStats("m", version, role, n, 0.5, auc, 0.5, n, 1.0, pnl, None)


def test_the_gate_waits_for_enough_live_decisions_and_then_compares() -> None:
    champ = _s("1", "champion", 100, 0.52, 10.0)
    ok, why = gate({"challenger": _s("2", "challenger", 50, 0.6, 99.0), "champion": champ}, 96)
    assert not ok
    assert "50 of 96" in why
    assert (
        gate({"challenger": _s("2", "challenger", 100, 0.6, 99.0)}, 96)[0] is False
    )  # no champion beside it
    ok, why = gate({"challenger": _s("2", "challenger", 100, 0.50, 99.0), "champion": champ}, 96)
    assert not ok
    assert "ROC-AUC" in why
    ok, why = gate({"challenger": _s("2", "challenger", 100, 0.55, 5.0), "champion": champ}, 96)
    assert not ok
    assert "PnL" in why
    ok, _ = gate({"challenger": _s("2", "challenger", 100, math.nan, 11.0), "champion": champ}, 96)
    assert ok  # one class only in the window: AUC undefined, PnL decides
