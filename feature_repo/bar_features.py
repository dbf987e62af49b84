"""Feast declarations of the bar features (the math is in ``hft.features``).

* entity ``symbol``;
* ``bar_features_source``: PostgreSQL, ``features.bar_features`` for the configured bar
  interval; ``event_timestamp`` is the bar's close time (when its features became known),
  ``created`` the write time;
* ``bar_features_push``: the push source the feature calculator writes through, with the
  PostgreSQL source as its batch source;
* view ``bar_features``: every feature of ``FEATURE_SPEC_FULL`` (Float64; trade-derived ones
  are null for bars built from OHLCV klines);
* one FeatureService per feature spec, named by its version: ``bar_features_v1`` (full) and
  ``bar_features_ohlcv_v1``. A model stores the name it was trained with.

``feast apply`` picks up the module-level objects below (the interval comes from
``HFT_BAR_INTERVAL``); ``hft.features.store.apply`` calls :func:`declarations` instead.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from feast import Entity, FeatureService, FeatureView, Field, PushSource, ValueType
from feast.infra.offline_stores.contrib.postgres_offline_store.postgres_source import PostgreSQLSource
from feast.types import Float64, String

from hft.features.bars import interval_ns
from hft.features.spec import FEATURE_SPEC_FULL, FEATURE_SPEC_OHLCV


def declarations(interval: str) -> dict[str, Any]:
    """Build the Feast objects for one bar interval."""
    interval_ns(interval)  # validated: it goes into the source query
    symbol = Entity(
        name="symbol",
        join_keys=["symbol"],
        value_type=ValueType.STRING,
        description="Exchange symbol, e.g. BTCUSDT",
    )
    columns = ", ".join(FEATURE_SPEC_FULL.names)
    source = PostgreSQLSource(
        name="bar_features_source",
        query=f"SELECT symbol, event_timestamp, created, {columns} FROM features.bar_features "
        f"WHERE interval = '{interval}'",
        timestamp_field="event_timestamp",
        created_timestamp_column="created",
        description=f"hft.features bar features, {interval} bars",
    )
    push = PushSource(name="bar_features_push", batch_source=source)
    view = FeatureView(
        name="bar_features",
        entities=[symbol],
        # A training row (entity timestamp = a bar's close) takes the row of exactly that bar: a
        # row at most one bar old. A missing row then gives nulls (the row is dropped) instead of
        # the previous bar's features, and the point-in-time join stays cheap: Feast's join
        # keeps every row inside the ttl per entity row before it picks the newest (a day of 15m
        # rows made a 5,000-row join take 15 s). Online reads do not look at the ttl.
        ttl=timedelta(microseconds=interval_ns(interval) // 1000),
        schema=[Field(name="symbol", dtype=String)]
        + [Field(name=n, dtype=Float64) for n in FEATURE_SPEC_FULL.names],
        online=True,
        source=push,
        tags={"interval": interval},
    )
    full = FeatureService(
        name=FEATURE_SPEC_FULL.version,
        features=[view],
        description="All bar features (bars built from trades)",
    )
    ohlcv = FeatureService(
        name=FEATURE_SPEC_OHLCV.version,
        features=[view[list(FEATURE_SPEC_OHLCV.names)]],
        description="OHLCV-only bar features (models trained on klines)",
    )
    return {
        "symbol": symbol,
        "bar_features_source": source,
        "bar_features_push": push,
        "bar_features": view,
        FEATURE_SPEC_FULL.version: full,
        FEATURE_SPEC_OHLCV.version: ohlcv,
    }


_objects = declarations(os.environ.get("HFT_BAR_INTERVAL", "15m"))
symbol = _objects["symbol"]
bar_features_source = _objects["bar_features_source"]
bar_features_push = _objects["bar_features_push"]
bar_features = _objects["bar_features"]
bar_features_v1 = _objects[FEATURE_SPEC_FULL.version]
bar_features_ohlcv_v1 = _objects[FEATURE_SPEC_OHLCV.version]
