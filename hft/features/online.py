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

from google.protobuf.timestamp_pb2 import Timestamp
from redis.exceptions import NoScriptError

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


# Feast's write rule in one step on the server: a row replaces the stored one only when its event
# timestamp is newer (Feast's RedisOnlineStore.online_write_batch reads the stored timestamp in one
# round trip and writes in a second; here the comparison runs in Redis, so the write joins the
# caller's pipeline). The stored timestamp is Feast's serialized google.protobuf.Timestamp:
# field 1 seconds (tag 0x08), field 2 nanos (tag 0x10), both varints.
# KEYS[1]: the entity's key; ARGV: ts field, seconds, nanos, serialized ts, ttl (0: none), then
# field/value pairs. Returns 1 when written, 0 when the stored row is as new or newer.
_WRITE_IF_NEWER = """
local prev = redis.call('HGET', KEYS[1], ARGV[1])
if prev then
  local vals = {0, 0}
  local i, n = 1, #prev
  while i <= n do
    local tag = string.byte(prev, i)
    i = i + 1
    local v, mul = 0, 1
    while i <= n do
      local b = string.byte(prev, i)
      i = i + 1
      v = v + (b % 128) * mul
      mul = mul * 128
      if b < 128 then break end
    end
    if tag == 8 then vals[1] = v elseif tag == 16 then vals[2] = v end
  end
  local secs, nanos = tonumber(ARGV[2]), tonumber(ARGV[3])
  if secs < vals[1] or (secs == vals[1] and nanos <= vals[2]) then return 0 end
end
local fields = {ARGV[1], ARGV[4]}
for j = 6, #ARGV do fields[#fields + 1] = ARGV[j] end
redis.call('HSET', KEYS[1], unpack(fields))
local ttl = tonumber(ARGV[5])
if ttl > 0 then redis.call('EXPIRE', KEYS[1], ttl) end
return 1
"""


class OnlineWriter(_Base):
    """Write bar feature rows to the online store, in Feast's Redis layout and by Feast's rule
    (the newer event timestamp wins), in one round trip that can carry the caller's commands."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        from feast.infra.online_stores.helpers import _mmh3
        from feast.infra.online_stores.redis import _versioned_fv_name
        from feast.protos.feast.types.Value_pb2 import Value

        view = _versioned_fv_name(self.view, self.config)
        self._ts_field = f"_ts:{view}".encode()
        self._fields = {name: _mmh3(f"{view}:{name}") for name in ALL_FEATURES}
        self._null = Value().SerializeToString()
        self._ttl = int(self.config.online_store.key_ttl_seconds or 0)
        self._rkeys: dict[str, bytes] = {}
        self.client: Any = self.online._get_client(self.config.online_store)
        self._script = self.client.register_script(_WRITE_IF_NEWER)

    def _rkey(self, symbol: str) -> bytes:
        key = self._rkeys.get(symbol)
        if key is None:
            from feast.infra.online_stores.helpers import _redis_key

            key = self._rkeys[symbol] = _redis_key(
                self.config.project,
                self._key(symbol),
                entity_key_serialization_version=self.config.entity_key_serialization_version,
            )
        return key

    def queue(self, pipe: Any, rows: list[tuple[str, datetime, dict[str, float]]]) -> list[tuple[Any, ...]]:
        """Add the rows' writes to a Redis pipeline (of this store's Redis); return them for
        :meth:`execute`, which runs the pipeline.

        Features missing from a dict or NaN are stored as null.
        """
        from feast.protos.feast.types.Value_pb2 import Value

        writes = []
        for symbol, feature_time, features in rows:
            ts = Timestamp()
            ts.FromDatetime(feature_time if feature_time.tzinfo else feature_time.replace(tzinfo=UTC))
            args: list[Any] = [self._ts_field, ts.seconds, ts.nanos, ts.SerializeToString(), self._ttl]
            for name, field in self._fields.items():
                v = features.get(name)
                args += (
                    field,
                    self._null
                    if v is None or math.isnan(v)
                    else Value(double_val=float(v)).SerializeToString(),
                )
            writes.append((self._rkey(symbol), *args))
            pipe.evalsha(self._script.sha, 1, *writes[-1])
        return writes

    def execute(self, pipe: Any, writes: list[tuple[Any, ...]]) -> list[Any]:
        """Run a pipeline holding :meth:`queue`'s ``writes``. A Redis that lost the script (a
        restart) refuses them: it gets the script and the writes run again (a write already done
        is refused as not newer). Raises the first other error, like ``pipe.execute()``."""
        results = list(pipe.execute(raise_on_error=False))
        if any(isinstance(r, NoScriptError) for r in results):
            self.client.script_load(_WRITE_IF_NEWER)
            retry = self.client.pipeline(transaction=False)
            for w in writes:
                retry.evalsha(self._script.sha, 1, *w)
            retry.execute()
            results = [None if isinstance(r, NoScriptError) else r for r in results]
        for r in results:
            if isinstance(r, Exception):
                raise r
        return results

    def write(
        self, symbol: str, feature_time: datetime, features: dict[str, float], created: datetime | None = None
    ) -> None:
        """Write one row; features missing from the dict or NaN are stored as null."""
        self.write_many([(symbol, feature_time, features)], created)

    def write_many(
        self, rows: list[tuple[str, datetime, dict[str, float]]], created: datetime | None = None
    ) -> None:
        """Write several rows in one round trip (Feast keeps the newest per symbol).

        ``created`` is accepted for Feast's signature; Feast's Redis store does not keep it.
        """
        pipe = self.client.pipeline(transaction=False)
        self.execute(pipe, self.queue(pipe, rows))
