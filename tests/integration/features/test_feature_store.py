"""Backfill into the offline table, Feast's point-in-time join, materialize and the online read."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from hft.config import Settings
from hft.features import FEATURE_SPEC_FULL, FEATURE_SPEC_OHLCV, compute_features
from tests.integration.features.conftest import START

pytestmark = pytest.mark.integration

STEP = pd.Timedelta(minutes=15)
END = START + 1500 * STEP


def _backfill(settings: Settings, symbol: str, materialize: bool = False) -> int:
    from hft.features.backfill import backfill

    return backfill(
        settings, symbol, "15m", START.to_pydatetime(), END.to_pydatetime(), materialize=materialize
    )


def test_backfill_upserts_one_partition_with_the_batch_features(
    feature_settings: Settings, loaded_bars: dict[str, pd.DataFrame]
) -> None:
    from hft.features.offline import read_features
    from hft.storage import db

    n = _backfill(feature_settings, "FTBTC")
    assert n == 1500 - FEATURE_SPEC_FULL.warmup_bars
    assert _backfill(feature_settings, "FTBTC") == n  # a re-run rewrites, never duplicates
    with db.connect(feature_settings) as conn:
        stored = read_features(conn, "FTBTC", "15m")
    assert len(stored) == n
    assert (stored["event_timestamp"] == stored.index + STEP).all()
    expected = compute_features(loaded_bars["FTBTC"], FEATURE_SPEC_FULL).iloc[FEATURE_SPEC_FULL.warmup_bars :]
    np.testing.assert_allclose(
        stored[list(FEATURE_SPEC_FULL.names)].to_numpy(), expected.to_numpy(), atol=1e-12
    )


def test_ohlcv_bars_give_absent_trade_features(
    feature_settings: Settings, loaded_bars: dict[str, pd.DataFrame]
) -> None:
    from hft.features.offline import read_features
    from hft.storage import db

    _backfill(feature_settings, "FTETH")
    with db.connect(feature_settings) as conn:
        stored = read_features(conn, "FTETH", "15m")
    assert stored["buy_imbalance"].isna().all()
    assert stored["vwap_dist"].isna().all()
    assert stored[list(FEATURE_SPEC_OHLCV.names)].notna().all().all()


def test_historical_features_never_use_a_bar_that_closed_after_the_timestamp(
    feature_settings: Settings, loaded_bars: dict[str, pd.DataFrame]
) -> None:
    from hft.features.store import apply, feature_store
    from hft.storage import db
    from hft.storage.bars import upsert_klines

    apply(feature_settings)
    _backfill(feature_settings, "FTBTC")
    store = feature_store(feature_settings)
    service = store.get_feature_service(FEATURE_SPEC_FULL.version)
    cut = START + 1000 * STEP  # open time of the first bar that will be changed
    # timestamps: exactly at a close, just before one, mid-bar; all before `cut` closes
    ts = sorted(
        [cut - STEP * 10, cut - pd.Timedelta(seconds=1), cut - STEP * 3 + pd.Timedelta(minutes=7), cut]
    )
    entity_df = pd.DataFrame({"symbol": "FTBTC", "event_timestamp": ts})

    def hist() -> pd.DataFrame:
        df = store.get_historical_features(entity_df=entity_df, features=service).to_df()
        return df.sort_values("event_timestamp").reset_index(drop=True)

    before = hist()
    feats = compute_features(loaded_bars["FTBTC"], FEATURE_SPEC_FULL)
    for i, t in enumerate(ts):
        # the newest bar known at t: close_time = open_time + STEP <= t
        open_time = (t - STEP).floor("15min")
        assert before.loc[i, "ret_1"] == pytest.approx(feats.loc[open_time, "ret_1"], abs=1e-12), t
    # rewrite every bar from `cut` on (prices x 1.5) and backfill again: rows known before
    # `cut` + STEP (the close of the first changed bar) must not move
    changed = loaded_bars["FTBTC"].copy()
    changed.loc[changed.index >= cut, ["open", "high", "low", "close"]] *= 1.5
    with db.connect(feature_settings) as conn:
        upsert_klines(conn, changed, "FTBTC", "15m")
    _backfill(feature_settings, "FTBTC")
    after = hist()
    names = list(FEATURE_SPEC_FULL.names)
    pd.testing.assert_frame_equal(before[names], after[names])
    # ...while a timestamp after that close does see the change
    later = pd.DataFrame({"symbol": ["FTBTC"], "event_timestamp": [cut + STEP]})
    row = store.get_historical_features(entity_df=later, features=service).to_df()
    assert row["ret_1"].iloc[0] == pytest.approx(math.log(1.5) + feats.loc[cut, "ret_1"], abs=1e-9)


def test_materialize_makes_the_last_row_the_online_one(
    feature_settings: Settings, loaded_bars: dict[str, pd.DataFrame]
) -> None:
    from hft.features.online import OnlineFeatures
    from hft.features.store import apply

    apply(feature_settings)
    _backfill(feature_settings, "FTBTC", materialize=True)
    online = OnlineFeatures(feature_settings, FEATURE_SPEC_FULL)
    got = online.latest("FTBTC")
    assert got is not None
    feature_time, values = got
    last_open = loaded_bars["FTBTC"].index[-1]
    assert feature_time == last_open + STEP
    expected = compute_features(loaded_bars["FTBTC"], FEATURE_SPEC_FULL).iloc[-1]
    for name in FEATURE_SPEC_FULL.names:
        assert values[name] == pytest.approx(expected[name], abs=1e-12), name
    sdk = online.latest_sdk("FTBTC")
    assert sdk["rsi_14"] == pytest.approx(expected["rsi_14"], abs=1e-12)
    assert online.latest("FTNONE") is None
