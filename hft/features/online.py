"""The online store: bar features in Redis in Feast's layout, written and read by Feast's classes.

:class:`OnlineWriter` writes one feature row per closed bar through Feast's
``RedisOnlineStore.online_write_batch`` (what ``FeatureStore.push``/``write_to_online_store``
end in, without their per-call DataFrame conversion); :class:`OnlineFeatures` reads the latest
row through ``RedisOnlineStore.online_read`` (what ``get_online_features`` calls, without its
response assembly). The keys and values are Feast's own, so ``get_online_features`` on
``bar_features_v1`` returns exactly what the calculator wrote; ``latest_sdk`` goes through the
SDK for comparison.

Feast is imported inside functions: it costs seconds at start-up.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from hft.config import ConfigurationError, Settings
from hft.features.spec import ALL_FEATURES, FEATURE_SPEC, FeatureSpec
from hft.features.store import ENTITY, FEATURE_VIEW, feature_store

if TYPE_CHECKING:
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey


def _entity_key(symbol: str) -> EntityKey:
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    return EntityKey(join_keys=[ENTITY], entity_values=[Value(string_val=symbol)])


class _Base:
    def __init__(self, settings: Settings) -> None:
        from feast.errors import FeatureViewNotFoundException
        from feast.infra.online_stores.redis import RedisOnlineStore

        self.store = feature_store(settings)
        try:
            self.view = self.store.get_feature_view(FEATURE_VIEW)
        except FeatureViewNotFoundException as exc:
            raise ConfigurationError(
                "Feast registry has no bar_features view: run `hft features apply`"
            ) from exc
        self.config = self.store.config
        self.online: Any = RedisOnlineStore()
        self._keys: dict[str, EntityKey] = {}

    def _key(self, symbol: str) -> EntityKey:
        key = self._keys.get(symbol)
        if key is None:
            key = self._keys[symbol] = _entity_key(symbol)
        return key


class OnlineFeatures(_Base):
    """Read the latest bar features of a symbol from the online store."""

    def __init__(self, settings: Settings, spec: FeatureSpec = FEATURE_SPEC) -> None:
        super().__init__(settings)
        self.spec = spec
        self._names = list(spec.names)
        self._service: Any = None

    def latest(self, symbol: str) -> tuple[datetime, dict[str, float]] | None:
        """Return (feature_time = bar close time, {name: value}) or None when nothing is stored.

        A feature stored as null (absent) comes back as NaN.
        """
        # a fresh list: Feast appends its timestamp field to the list it is given
        rows = self.online.online_read(self.config, self.view, [self._key(symbol)], list(self._names))
        ts, values = rows[0]
        if ts is None or not values:
            return None
        out: dict[str, float] = {}
        found = False
        for name in self._names:
            v = values.get(name)
            if v is not None and v.WhichOneof("val") == "double_val":
                out[name] = v.double_val
                found = True
            else:
                out[name] = math.nan
        if not found:  # Feast answers an unknown entity with empty values at the epoch
            return None
        return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts, out

    def latest_sdk(self, symbol: str) -> dict[str, Any]:
        """The same row through ``FeatureStore.get_online_features`` with the spec's FeatureService."""
        if self._service is None:  # without the cache Feast re-reads the registry file per call
            self._service = self.store.get_feature_service(self.spec.version, allow_cache=True)
        resp = self.store.get_online_features(features=self._service, entity_rows=[{ENTITY: symbol}])
        return {k: v[0] for k, v in resp.to_dict().items()}


class OnlineWriter(_Base):
    """Write bar feature rows to the online store (Feast's Redis layout)."""

    def write(
        self, symbol: str, feature_time: datetime, features: dict[str, float], created: datetime | None = None
    ) -> None:
        """Write one row; features missing from the dict or NaN are stored as null."""
        self.write_many([(symbol, feature_time, features)], created)

    def write_many(
        self, rows: list[tuple[str, datetime, dict[str, float]]], created: datetime | None = None
    ) -> None:
        """Write several rows in one Redis pipeline (Feast keeps the newest per symbol)."""
        from feast.protos.feast.types.Value_pb2 import Value

        data = []
        for symbol, feature_time, features in rows:
            values = {}
            for name in ALL_FEATURES:
                v = features.get(name)
                values[name] = Value() if v is None or math.isnan(v) else Value(double_val=float(v))
            data.append((self._key(symbol), values, feature_time, created or feature_time))
        self.online.online_write_batch(self.config, self.view, data, None)
