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


def test_the_one_trip_online_write_keeps_feast_s_layout_and_rule(feature_settings: Settings) -> None:
    """The calculator's online write (a script in the same pipeline as the announcement) stores
    what Feast's own reader returns, and keeps Feast's rule against Feast's own writer: a row
    replaces the stored one only when its event time is newer. A Redis that lost the script (a
    restart) gets it again."""
    from datetime import timedelta

    import redis
    from feast.infra.online_stores.redis import RedisOnlineStore

    from hft.features.online import OnlineFeatures, OnlineWriter, _entity_key
    from hft.features.store import apply

    apply(feature_settings)
    names = list(FEATURE_SPEC_FULL.names)
    t0 = START.to_pydatetime()

    def row(x: float) -> dict[str, float]:
        return {n: x + i for i, n in enumerate(names)} | {names[1]: math.nan}

    writer, online = OnlineWriter(feature_settings), OnlineFeatures(feature_settings, FEATURE_SPEC_FULL)
    redis.Redis.from_url(feature_settings.redis_dsn).script_flush()  # as after a Redis restart
    writer.write("FTBTC", t0, row(1.0))
    got = online.latest("FTBTC")
    assert got is not None
    assert got[0] == t0
    assert got[1][names[0]] == 1.0
    assert math.isnan(got[1][names[1]])  # NaN stored as null, read back as absent
    assert online.latest_sdk("FTBTC")[names[2]] == 3.0  # the SDK's reader agrees

    writer.write("FTBTC", t0 - timedelta(minutes=15), row(5.0))  # older: refused
    writer.write("FTBTC", t0, row(6.0))  # the same instant: refused, as Feast does
    assert online.latest("FTBTC")[1][names[0]] == 1.0  # type: ignore[index]
    later = t0 + timedelta(minutes=15, microseconds=1)  # nanos in the stored Timestamp
    writer.write("FTBTC", later, row(7.0))
    assert online.latest("FTBTC")[0] == later  # type: ignore[index]
    assert online.latest("FTBTC")[1][names[0]] == 7.0  # type: ignore[index]

    # Feast's own writer, older than what the script wrote: Feast refuses it too (same layout) ...
    from feast.protos.feast.types.Value_pb2 import Value

    feast_store = RedisOnlineStore()
    older = {n: Value(double_val=9.0) for n in names}
    feast_store.online_write_batch(
        writer.config, writer.view, [(_entity_key("FTBTC"), older, t0, None)], None
    )
    assert online.latest("FTBTC")[1][names[0]] == 7.0  # type: ignore[index]
    # ... and a newer row of Feast's is then newer for the script too
    newest = later + timedelta(hours=1)
    feast_store.online_write_batch(
        writer.config, writer.view, [(_entity_key("FTBTC"), older, newest, None)], None
    )
    writer.write("FTBTC", later + timedelta(minutes=30), row(8.0))
    assert online.latest("FTBTC")[1][names[0]] == 9.0  # type: ignore[index]
    redis.Redis.from_url(feature_settings.redis_dsn).delete(writer._rkey("FTBTC"))
