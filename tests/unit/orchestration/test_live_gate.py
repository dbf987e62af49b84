"""The live gate's ROC-AUC tolerance (HFT_SHADOW_AUC_TOLERANCE): a challenger may trail the champion's
live AUC by that much on a small shared sample, never on paper PnL."""

from __future__ import annotations

from hft.trading.shadow import ShadowStats, gate


def _s(version: str, role: str, n: int, auc: float, pnl: float) -> ShadowStats:
    return ShadowStats("m", version, role, n, 0.5, auc, 0.5, n, 1.0, pnl, None)


def test_auc_tolerance_lets_a_slightly_lower_live_auc_pass_but_not_a_lower_pnl() -> None:
    champ = _s("1", "champion", 30, 0.60, 0.0)
    chal = _s("2", "challenger", 30, 0.55, 0.0)
    ok, why = gate({"challenger": chal, "champion": champ}, 20)
    assert not ok
    assert "ROC-AUC 0.5500 < champion's 0.6000 over 30 bars" in why
    ok, why = gate({"challenger": chal, "champion": champ}, 20, auc_tolerance=0.1)
    assert ok, why
    ok, why = gate({"challenger": chal, "champion": champ}, 20, auc_tolerance=0.02)
    assert not ok
    assert "tolerance 0.02" in why
    poorer = _s("2", "challenger", 30, 0.55, -1.0)
    ok, why = gate({"challenger": poorer, "champion": champ}, 20, auc_tolerance=1.0)
    assert not ok
    assert "PnL" in why
    ok, why = gate({"challenger": _s("2", "challenger", 5, 0.9, 9.0), "champion": champ}, 20, 1.0)
    assert not ok
    assert "5 of 20" in why
