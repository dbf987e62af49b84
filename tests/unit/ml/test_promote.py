"""The promotion gate on plain numbers."""

from __future__ import annotations

from hft.ml.promote import decide

BASE = {"majority": 0.5, "persistence": 0.51}


def test_first_model_is_promoted_only_if_it_beats_the_trivial_baselines() -> None:
    ok, reason = decide({"roc_auc": 0.52, "net_pnl_after_fees": -5.0}, None, BASE, 0.002)
    assert ok
    assert "persistence" in reason
    ok, _ = decide({"roc_auc": 0.511, "net_pnl_after_fees": 0.0}, None, BASE, 0.002)
    assert not ok


def test_challenger_must_beat_the_champion_by_the_margin_and_not_lose_more_after_fees() -> None:
    champ = {"roc_auc": 0.53, "net_pnl_after_fees": -10.0}
    assert not decide({"roc_auc": 0.531, "net_pnl_after_fees": 5.0}, champ, BASE, 0.002)[0]
    assert not decide({"roc_auc": 0.54, "net_pnl_after_fees": -20.0}, champ, BASE, 0.002)[0]
    ok, reason = decide({"roc_auc": 0.54, "net_pnl_after_fees": -10.0}, champ, BASE, 0.002)
    assert ok
    assert "champion" in reason
