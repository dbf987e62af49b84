"""The feature spec and the batch features: warm-up, absence of trade features, no look-ahead."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from hft.features import (
    FEATURE_SPEC_FULL,
    FEATURE_SPEC_OHLCV,
    OHLCV_FEATURES,
    TRADE_FEATURES,
    FeatureState,
    compute_features,
    get_spec,
)


def test_specs_are_versioned_ordered_and_hashable() -> None:
    assert FEATURE_SPEC_FULL.version == "bar_features_v1"
    assert FEATURE_SPEC_FULL.names[: len(OHLCV_FEATURES)] == OHLCV_FEATURES
    assert not set(FEATURE_SPEC_OHLCV.names) & set(TRADE_FEATURES)
    assert {FEATURE_SPEC_FULL: 1}[get_spec("bar_features_v1")] == 1
    assert FEATURE_SPEC_OHLCV.warmup_bars == max(FEATURE_SPEC_OHLCV.warmup.values())
    with pytest.raises(ValueError, match="unknown feature spec"):
        get_spec("bar_features_v0")


def test_trade_features_are_absent_for_ohlcv_bars_not_zero(btc_15m: pd.DataFrame) -> None:
    feats = compute_features(btc_15m.iloc[:800], FEATURE_SPEC_OHLCV)
    assert list(feats.columns) == list(FEATURE_SPEC_OHLCV.names)
    assert not set(feats.columns) & set(TRADE_FEATURES)
    with pytest.raises(ValueError, match="trade-derived"):
        compute_features(btc_15m.iloc[:800], FEATURE_SPEC_FULL)


def test_each_feature_is_nan_exactly_before_its_warmup(btc_15m: pd.DataFrame) -> None:
    spec = FEATURE_SPEC_OHLCV
    feats = compute_features(btc_15m.iloc[:1500], spec)
    for name, w in spec.warmup.items():
        col = feats[name].to_numpy()
        assert np.isnan(col[:w]).all(), name
        assert not np.isnan(col[w:]).any(), name


def test_features_after_warmup_do_not_depend_on_where_the_series_starts(btc_15m: pd.DataFrame) -> None:
    spec = FEATURE_SPEC_OHLCV
    long = compute_features(btc_15m.iloc[:6000], spec)
    short = compute_features(btc_15m.iloc[3000:6000], spec)
    w = spec.warmup_bars
    diff = (long.iloc[3000 + w :] - short.iloc[w:]).abs().to_numpy().max()
    assert diff < 1e-9


def test_changing_future_bars_leaves_past_features_unchanged(btc_15m: pd.DataFrame) -> None:
    bars = btc_15m.iloc[:2000].copy()
    before = compute_features(bars, FEATURE_SPEC_OHLCV)
    bars.iloc[1500:, :] = bars.iloc[1500:, :] * 1.5
    after = compute_features(bars, FEATURE_SPEC_OHLCV)
    pd.testing.assert_frame_equal(before.iloc[:1500], after.iloc[:1500])
    assert not np.allclose(before.iloc[1500:].to_numpy(), after.iloc[1500:].to_numpy())


def test_features_are_scale_free(btc_15m: pd.DataFrame) -> None:
    bars = btc_15m.iloc[:1500]
    scaled = bars.copy()
    scaled[["open", "high", "low", "close"]] *= 0.037
    scaled["volume"] *= 250.0
    a = compute_features(bars, FEATURE_SPEC_OHLCV).iloc[FEATURE_SPEC_OHLCV.warmup_bars :]
    b = compute_features(scaled, FEATURE_SPEC_OHLCV).iloc[FEATURE_SPEC_OHLCV.warmup_bars :]
    np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), rtol=1e-7, atol=1e-9)


def test_indicators_match_textbook_values_on_a_small_series() -> None:
    # 30 closes rising by 1 then 10 falling by 1: RSI, SMA and Bollinger by hand
    closes = [100.0 + i for i in range(30)] + [129.0 - i for i in range(1, 11)]
    idx = pd.date_range("2024-01-01", periods=len(closes), freq="15min", tz="UTC", name="open_time")
    bars = pd.DataFrame(
        {
            "open": closes,
            "high": [c + 1 for c in closes],
            "low": [c - 1 for c in closes],
            "close": closes,
            "volume": [10.0] * len(closes),
        },
        index=idx,
    )
    state = FeatureState(FEATURE_SPEC_OHLCV)
    rows = [
        state.update({"open_time_ns": t.value, **r})
        for t, r in zip(idx, bars.to_dict("records"), strict=True)
    ]
    assert all(r is None for r in rows)  # 40 bars < warm-up
    feats = compute_features(bars, FEATURE_SPEC_OHLCV)
    last = feats.iloc[-1]
    assert last["ret_1"] == pytest.approx(math.log(119 / 120))
    window = np.array(closes[-20:])
    assert last["sma_dist_20"] == pytest.approx(closes[-1] / window.mean() - 1)
    sd = window.std()
    assert last["bb_pos_20"] == pytest.approx((closes[-1] - (window.mean() - 2 * sd)) / (4 * sd))
    assert (feats["volume_z_20"].dropna() == 0.0).all()  # constant volume: z is 0, not NaN
    assert feats["hour_sin"].iloc[0] == pytest.approx(0.0)
    assert feats["hour_cos"].iloc[0] == pytest.approx(1.0)


def test_offline_table_migration_holds_every_feature_of_the_spec() -> None:
    import importlib.util

    from hft.config import REPO_ROOT
    from hft.features.spec import ALL_FEATURES

    path = REPO_ROOT / "hft/storage/migrations/versions/0002_features.py"
    spec = importlib.util.spec_from_file_location("m0002", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert tuple(module.FEATURE_COLUMNS) == ALL_FEATURES


def test_feature_repo_declares_a_service_per_spec_over_one_view() -> None:
    from hft.features.store import declarations

    objs = declarations("15m")
    assert {"bar_features_v1", "bar_features_ohlcv_v1", "bar_features", "symbol", "bar_features_push"} <= set(
        objs
    )
    view = objs["bar_features"]
    assert [f.name for f in view.features] == list(FEATURE_SPEC_FULL.names)
    with pytest.raises(ValueError, match="bad bar interval"):
        declarations("15m'; DROP TABLE x; --")


def test_v2_spec_is_registered_extends_v1_and_stays_out_of_the_store() -> None:
    from hft.features.spec import FEATURE_SPEC_OHLCV_V2, OHLCV_V2_FEATURES, SPECS, STORE_SPECS

    assert SPECS["bar_features_ohlcv_v2"] is FEATURE_SPEC_OHLCV_V2
    assert FEATURE_SPEC_OHLCV_V2.names == OHLCV_FEATURES + OHLCV_V2_FEATURES
    assert not FEATURE_SPEC_OHLCV_V2.uses_trades
    assert len(set(FEATURE_SPEC_OHLCV_V2.names)) == FEATURE_SPEC_OHLCV_V2.n_features == 47
    # the served versions keep their vectors
    assert FEATURE_SPEC_OHLCV.version == "bar_features_ohlcv_v1"
    assert FEATURE_SPEC_OHLCV.n_features == 22
    assert FEATURE_SPEC_FULL.n_features == 25
    assert "bar_features_ohlcv_v2" not in STORE_SPECS


@pytest.fixture(scope="module")
def v2_bars(btc_15m: pd.DataFrame) -> pd.DataFrame:
    return btc_15m.iloc[:9000]


def test_v2_each_feature_is_nan_exactly_before_its_warmup(v2_bars: pd.DataFrame) -> None:
    from hft.features.spec import FEATURE_SPEC_OHLCV_V2 as spec

    feats = compute_features(v2_bars.iloc[:4000], spec)
    for name, w in spec.warmup.items():
        col = feats[name].to_numpy()
        assert np.isnan(col[:w]).all(), name
        assert not np.isnan(col[w:]).any(), name


def test_v2_no_look_ahead_features_at_bar_i_ignore_every_later_bar(v2_bars: pd.DataFrame) -> None:
    from hft.features.spec import FEATURE_SPEC_OHLCV_V2 as spec

    bars = v2_bars.iloc[:4500].copy()
    before = compute_features(bars, spec)
    cut = 4000
    rng = np.random.default_rng(7)
    later = bars.iloc[cut:]
    scale = np.exp(rng.normal(0.0, 0.01, len(later)))
    for col in ("open", "high", "low", "close"):
        bars.iloc[cut:, bars.columns.get_loc(col)] = later[col].to_numpy() * scale
    bars.iloc[cut:, bars.columns.get_loc("volume")] = later["volume"].to_numpy()[::-1]
    after = compute_features(bars, spec)
    pd.testing.assert_frame_equal(before.iloc[:cut], after.iloc[:cut], check_exact=True)
    changed = (before.iloc[cut:] != after.iloc[cut:]).any()
    # every feature but the clock's sees the change
    assert set(changed[~changed].index) == {"hour_sin", "hour_cos", "dow_sin", "dow_cos"}


def test_v2_after_warmup_does_not_depend_on_where_the_series_starts(v2_bars: pd.DataFrame) -> None:
    from hft.features.spec import FEATURE_SPEC_OHLCV_V2 as spec

    long = compute_features(v2_bars, spec)
    short = compute_features(v2_bars.iloc[3000:], spec)
    w = spec.warmup_bars
    diff = (long.iloc[3000 + w :] - short.iloc[w:]).abs().to_numpy().max()
    assert diff < 1e-9


def test_v2_features_are_scale_free(v2_bars: pd.DataFrame) -> None:
    from hft.features.spec import FEATURE_SPEC_OHLCV_V2 as spec

    bars = v2_bars.iloc[:3500]
    scaled = bars.copy()
    scaled[["open", "high", "low", "close"]] *= 0.037
    scaled["volume"] *= 250.0
    a = compute_features(bars, spec).iloc[spec.warmup_bars :]
    b = compute_features(scaled, spec).iloc[spec.warmup_bars :]
    np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), rtol=1e-7, atol=1e-9)


def test_v2_stream_with_bars_equals_batch_and_uses_the_open(v2_bars: pd.DataFrame) -> None:
    from hft.features import Bar
    from hft.features.spec import FEATURE_SPEC_OHLCV_V2 as spec

    bars = v2_bars.iloc[:3100]
    batch = compute_features(bars, spec)
    state = FeatureState(spec)
    last = None
    for t, r in zip(bars.index, bars.to_dict("records"), strict=True):
        bar = Bar(
            "BTCUSDT",
            "15m",
            t.value,
            t.value + 900_000_000_000,
            r["open"],
            r["high"],
            r["low"],
            r["close"],
            r["volume"],
        )
        last = state.update(bar)
    assert last is not None
    assert list(last) == list(spec.names)
    assert list(last.values()) == batch.iloc[-1].tolist()


def test_training_selects_the_spec_by_setting_and_the_store_refuses_v2(
    monkeypatch: pytest.MonkeyPatch, btc_15m: pd.DataFrame
) -> None:
    from hft.config import ConfigurationError, get_settings
    from hft.features.store import historical_features
    from hft.ml.dataset import default_feature_set

    get_settings.cache_clear()
    assert default_feature_set().version == "bar_features_ohlcv_v1"  # the default stays v1
    monkeypatch.setenv("HFT_FEATURE_SPEC", "bar_features_ohlcv_v2")
    get_settings.cache_clear()
    try:
        fs = default_feature_set()
        assert fs.version == "bar_features_ohlcv_v2"
        assert fs.warmup_bars == 809
        feats = fs.compute(btc_15m.iloc[:3000])
        assert list(feats.columns) == list(fs.names)
        assert (
            default_feature_set("bar_features_ohlcv_v1").version == "bar_features_ohlcv_v1"
        )  # a model's own
        rows = pd.DataFrame({"symbol": ["BTCUSDT"], "event_timestamp": [btc_15m.index[0]]})
        with pytest.raises(ConfigurationError, match="not in the offline store"):
            historical_features(get_settings(), "bar_features_ohlcv_v2", rows)
    finally:
        monkeypatch.delenv("HFT_FEATURE_SPEC")
        get_settings.cache_clear()
