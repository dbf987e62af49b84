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


def test_a_model_on_features_the_store_does_not_hold_is_never_promoted() -> None:
    from hft.features.spec import STORE_SPECS
    from hft.ml.promote import not_servable

    for version in STORE_SPECS:
        assert not_servable(version) is None
    assert not_servable(None) is None  # an older model without the tag
    why = not_servable("bar_features_ohlcv_v2")
    assert why is not None
    assert "bar_features_ohlcv_v2" in why
    assert "could not serve" in why


def test_models_on_different_labels_are_compared_by_pnl_and_each_against_its_baselines() -> None:
    from hft.ml.promote import label_config

    assert label_config({}) == (1, "direction")  # a model from before the label tags
    assert label_config({"horizon": "4", "label_kind": "barrier"}) == (4, "barrier")
    champ = {"roc_auc": 0.56, "net_pnl_after_fees": -10.0}  # a 1-bar AUC, not comparable
    ok, reason = decide({"roc_auc": 0.53, "net_pnl_after_fees": 5.0}, champ, BASE, 0.002, same_labels=False)
    assert ok
    assert "labels differ" in reason
    # ... but it must still beat its own trivial baselines, and not lose more after fees
    assert not decide({"roc_auc": 0.511, "net_pnl_after_fees": 5.0}, champ, BASE, 0.002, False)[0]
    assert not decide({"roc_auc": 0.53, "net_pnl_after_fees": -20.0}, champ, BASE, 0.002, False)[0]
    # on the same labels the AUC comparison stands
    assert not decide({"roc_auc": 0.53, "net_pnl_after_fees": 5.0}, champ, BASE, 0.002)[0]
