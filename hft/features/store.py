"""Feast wiring: the repo config from Settings, the declarations of ``feature_repo/``, apply.

``feature_repo/feature_store.yaml`` names every address as ``${HFT_FEAST_*}``; Feast's own
loader expands environment variables, and :func:`feast_env` computes them from Settings
(``hft features env`` prints them for a shell that runs the ``feast`` CLI). In-process,
:func:`repo_config` fills the same file from Settings without touching ``os.environ``.

The declarations (entity ``symbol``, the PostgreSQL batch source on ``features.bar_features``,
the push source, the ``bar_features`` view, the FeatureServices named after the feature
specs) live in ``feature_repo/bar_features.py``; :func:`declarations` loads that file so the
CLI's ``feast apply`` and :func:`apply` register the same objects.

Feast is imported inside functions: it costs seconds at start-up.
"""

from __future__ import annotations

import importlib.util
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import yaml
from sqlalchemy.engine import make_url

from hft.config import REPO_ROOT, ConfigurationError, Settings
from hft.features.bars import interval_ns
from hft.features.spec import STORE_SPECS

if TYPE_CHECKING:
    from feast import FeatureStore
    from feast.repo_config import RepoConfig

REPO_DIR = REPO_ROOT / "feature_repo"
PROJECT = "hft"
FEATURE_VIEW = "bar_features"
PUSH_SOURCE = "bar_features_push"
ENTITY = "symbol"
_VAR = re.compile(r"\$\{([A-Z0-9_]+)\}")
_stores: dict[tuple[tuple[str, str], ...], FeatureStore] = {}
_lock = threading.Lock()


def redis_connection_string(redis_url: str) -> str:
    """Turn ``redis://[:pw@]host:port/db`` into Feast's ``host:port,db=N[,password=...]`` form."""
    u = urlparse(redis_url)
    parts = [f"{u.hostname or '127.0.0.1'}:{u.port or 6379}"]
    db = (u.path or "/0").lstrip("/") or "0"
    parts.append(f"db={db}")
    if u.password:
        parts.append(f"password={u.password}")
    if u.scheme == "rediss":
        parts.append("ssl=true")
    return ",".join(parts)


def feast_env(settings: Settings) -> dict[str, str]:
    """The ``HFT_FEAST_*`` variables that ``feature_store.yaml`` refers to, from Settings."""
    pg = make_url(settings.database_url())
    interval_ns(settings.bar_interval)  # refuse a malformed interval before it reaches SQL
    return {
        "HFT_FEAST_REGISTRY": str(settings.home_dir / "feast" / "registry.db"),
        "HFT_FEAST_REDIS": redis_connection_string(settings.redis_dsn),
        "HFT_FEAST_PG_HOST": pg.host or settings.bind_host,
        "HFT_FEAST_PG_PORT": str(pg.port or 5432),
        "HFT_FEAST_PG_DB": pg.database or settings.postgres_db,
        "HFT_FEAST_PG_USER": pg.username or "postgres",
        "HFT_FEAST_PG_PASSWORD": pg.password if isinstance(pg.password, str) else "",
        "HFT_BAR_INTERVAL": settings.bar_interval,
    }


def repo_config(settings: Settings) -> RepoConfig:
    """Feast's RepoConfig: ``feature_repo/feature_store.yaml`` with its variables from Settings."""
    from feast.repo_config import RepoConfig

    env = feast_env(settings)
    text = (REPO_DIR / "feature_store.yaml").read_text()
    raw = yaml.safe_load(_VAR.sub(lambda m: env[m.group(1)], text))
    config = RepoConfig(**raw)
    config.repo_path = REPO_DIR
    (settings.home_dir / "feast").mkdir(parents=True, exist_ok=True)
    return config


def feature_store(settings: Settings) -> FeatureStore:
    """The FeatureStore of these Settings (one per configuration per process)."""
    from feast import FeatureStore

    key = tuple(sorted(feast_env(settings).items()))
    with _lock:
        store = _stores.get(key)
        if store is None:
            store = _stores[key] = FeatureStore(config=repo_config(settings))
        return store


def declarations(interval: str) -> dict[str, Any]:
    """The Feast objects declared in ``feature_repo/bar_features.py`` for a bar interval."""
    spec = importlib.util.spec_from_file_location(
        "hft_feature_repo_bar_features", REPO_DIR / "bar_features.py"
    )
    if spec is None or spec.loader is None:
        raise FileNotFoundError(REPO_DIR / "bar_features.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    objects: dict[str, Any] = module.declarations(interval)
    return objects


def apply(settings: Settings) -> list[str]:
    """Register the declarations in the registry and create the online tables; return their names."""
    objects = declarations(settings.bar_interval)
    store = feature_store(settings)
    store.apply(list(objects.values()))
    store.refresh_registry()  # type: ignore[no-untyped-call]
    return sorted(objects)


def ensure_applied(settings: Settings) -> None:
    """Apply the declarations when the registry does not hold the feature view yet, or holds it
    with another ttl (a registry applied before the declaration changed)."""
    from feast.errors import FeatureViewNotFoundException

    store = feature_store(settings)
    registry_file = Path(feast_env(settings)["HFT_FEAST_REGISTRY"])
    if registry_file.exists():
        try:
            registered = store.get_feature_view(FEATURE_VIEW)
            if registered.ttl == declarations(settings.bar_interval)[FEATURE_VIEW].ttl:
                return
        except FeatureViewNotFoundException:
            pass
    apply(settings)


def historical_features(
    settings: Settings, service: str, entity_rows: pd.DataFrame, chunk_rows: int = 2_000
) -> pd.DataFrame:
    """Feast's point-in-time join of a FeatureService for entity rows (``symbol``, ``event_timestamp``).

    Each row gets the newest ``bar_features`` row of its symbol with ``event_timestamp`` at or
    before the row's (within the view's ttl): for a decision at a bar's close, the features of
    that bar, computed from bars closed at or before it. Returns the entity columns plus the
    service's features, in the order of ``entity_rows``; a row with no feature row has NaN.
    Rows go to Feast in chunks of ``chunk_rows``, ordered by time then symbol: Feast's
    PostgreSQL join matches rows by symbol and then filters by time, so its work grows with the
    square of the rows per symbol in one call, while each call costs a fixed ~0.2-0.5 s (template,
    entity table upload). Measured on 24,000 rows of two symbols: 1,000 or 2,000 rows a call
    5.5 s, 4,000 7.7 s, 8,000 11.7 s (load 4 on 2 cores).
    """
    if service not in STORE_SPECS:
        raise ConfigurationError(
            f"feature spec {service} is not in the offline store (it holds {', '.join(sorted(STORE_SPECS))}); "
            "train on it from bars with --data <OHLCV CSV>"
        )
    ensure_applied(settings)
    store = feature_store(settings)
    fs = store.get_feature_service(service)
    names = [f.name for proj in fs.feature_view_projections for f in proj.features]
    rows = entity_rows[[ENTITY, "event_timestamp"]].copy()
    rows["event_timestamp"] = pd.to_datetime(rows["event_timestamp"], utc=True)
    rows["_row"] = np.arange(len(rows))
    rows = rows.sort_values(["event_timestamp", ENTITY], kind="stable")
    parts = []
    for i in range(0, len(rows), chunk_rows):
        chunk = rows.iloc[i : i + chunk_rows]
        got = store.get_historical_features(entity_df=chunk[[ENTITY, "event_timestamp"]], features=fs).to_df()
        got["event_timestamp"] = pd.to_datetime(got["event_timestamp"], utc=True)
        parts.append(chunk.merge(got, on=[ENTITY, "event_timestamp"], how="left", validate="one_to_one"))
    if not parts:
        return pd.DataFrame(columns=[ENTITY, "event_timestamp", *names])
    out = pd.concat(parts, ignore_index=True).sort_values("_row", kind="stable")
    out = out.drop(columns="_row").reset_index(drop=True)
    out[names] = out[names].astype("float64")
    return out[[ENTITY, "event_timestamp", *names]]
