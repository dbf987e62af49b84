"""Database access for the market store: engines, migrations and the TimescaleDB check.

``engine(settings)`` gives a cached SQLAlchemy engine; ``connect(settings)`` a raw psycopg
connection for COPY; ``migrate(settings)`` runs Alembic to ``head`` under a PostgreSQL
advisory lock, so every process may call it at start, at the same time. ``backend(settings)``
says once per database whether TimescaleDB is there (and its license) and logs which.

SQLAlchemy, psycopg and Alembic are imported inside functions: every stream process imports this
module through the bus runtime, and the market producer never opens the database.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hft.bus.retry import Stopped, backoff_delays, retry
from hft.config import ConfigurationError, Settings, TransientError

if TYPE_CHECKING:
    import psycopg
    from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Any constant shared by every process that migrates; "hft migrate" in ASCII.
MIGRATION_LOCK_KEY = 0x6866746D69677261

_engines: dict[str, Engine] = {}
_backends: dict[str, Backend] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class Backend:
    """What the market database can do: plain PostgreSQL or TimescaleDB (and which license)."""

    server_version: str
    timescale: bool
    timescale_version: str | None = None
    license: str | None = None  # "apache" (no compression/caggs) or "timescale"

    @property
    def compression(self) -> bool:
        """Whether the license allows native compression (and continuous aggregates)."""
        return self.timescale and self.license == "timescale"

    def describe(self) -> str:
        """One line for logs and ``hft db info``."""
        if not self.timescale:
            return f"PostgreSQL {self.server_version} (native partitioning + BRIN, bars by the ingestor)"
        return (
            f"PostgreSQL {self.server_version} + TimescaleDB {self.timescale_version} "
            f"(license {self.license}: hypertables + time_bucket"
            f"{', compression' if self.compression else ', no compression/continuous aggregates'})"
        )


def sqlalchemy_url(settings: Settings) -> str:
    """SQLAlchemy URL of the market database (psycopg 3 driver)."""
    from sqlalchemy.engine import make_url

    url = make_url(settings.database_url())
    if url.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
        url = url.set(drivername="postgresql+psycopg")
    return url.render_as_string(hide_password=False)


def libpq_url(settings: Settings) -> str:
    """libpq connection string (``postgresql://...``) of the market database, for psycopg."""
    from sqlalchemy.engine import make_url

    return (
        make_url(settings.database_url()).set(drivername="postgresql").render_as_string(hide_password=False)
    )


def engine(settings: Settings) -> Engine:
    """Return the SQLAlchemy engine of the market database, one per URL per process."""
    from sqlalchemy import create_engine

    url = sqlalchemy_url(settings)
    with _lock:
        eng = _engines.get(url)
        if eng is None:
            eng = create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)
            _engines[url] = eng
        return eng


def connect(settings: Settings, autocommit: bool = False, **kwargs: Any) -> psycopg.Connection[Any]:
    """Open a raw psycopg connection (COPY, long-lived writers); raise TransientError when down."""
    import psycopg

    try:
        return psycopg.connect(libpq_url(settings), autocommit=autocommit, connect_timeout=5, **kwargs)
    except psycopg.OperationalError as exc:
        raise TransientError(f"PostgreSQL unavailable: {exc}".strip()) from exc


def alembic_config(settings: Settings) -> Any:
    """Alembic Config for hft/storage/migrations pointing at the market database."""
    from alembic.config import Config

    cfg = Config(str(MIGRATIONS_DIR / "alembic.ini"))
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    # '%' is ConfigParser interpolation syntax; a password may contain it
    cfg.set_main_option("sqlalchemy.url", sqlalchemy_url(settings).replace("%", "%%"))
    cfg.attributes["configure_logger"] = False
    return cfg


def migrate(settings: Settings, revision: str = "head") -> str | None:
    """Upgrade the schema to ``revision`` (idempotent, safe from several processes at once).

    A session-level advisory lock serialises concurrent callers: the second one waits, then
    finds the schema current and does nothing. Returns the revision the database is at.
    """
    from alembic import command
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)  # one line per plugin, each run
    eng = engine(settings)
    try:
        conn = eng.connect().execution_options(isolation_level="AUTOCOMMIT")
    except OperationalError as exc:
        raise TransientError(f"PostgreSQL unavailable for migrations: {exc.orig}") from exc
    with conn:
        conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
        try:
            command.upgrade(alembic_config(settings), revision)
            current = conn.execute(text("SELECT version_num FROM public.alembic_version")).scalar()
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_KEY})
    log.info("schema at revision %s", current)
    backend(settings)  # log once which backend serves the tables
    return str(current) if current else None


def migrate_when_ready(settings: Settings, stop: threading.Event) -> None:
    """Migrate, waiting (with backoff) while PostgreSQL is not up yet, until ``stop`` is set."""
    with contextlib.suppress(Stopped):
        retry(lambda: migrate(settings), stop, "database migration", delays=backoff_delays(0.5, 5.0))


def detect_backend(conn: Any) -> Backend:
    """Inspect one connection (SQLAlchemy or psycopg): is TimescaleDB installed, under which license."""

    def scalar(sql: str) -> Any:
        if hasattr(conn, "exec_driver_sql"):
            return conn.exec_driver_sql(sql).scalar()
        row = conn.execute(sql).fetchone()
        return row[0] if row else None

    version = str(scalar("SHOW server_version")).split()[0]
    ts_version = scalar("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
    if ts_version is None:
        return Backend(server_version=version, timescale=False)
    license_ = scalar("SHOW timescaledb.license")
    return Backend(
        server_version=version,
        timescale=True,
        timescale_version=str(ts_version),
        license=str(license_) if license_ else None,
    )


def timescale_available(conn: Any) -> bool:
    """True when the server can create the extension: packaged and preloaded."""

    def scalar(sql: str) -> Any:
        if hasattr(conn, "exec_driver_sql"):
            return conn.exec_driver_sql(sql).scalar()
        row = conn.execute(sql).fetchone()
        return row[0] if row else None

    packaged = scalar("SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'")
    preload = str(scalar("SHOW shared_preload_libraries") or "")
    return bool(packaged) and "timescaledb" in preload


def backend(settings: Settings) -> Backend:
    """Return (and log, once per database) which backend the market tables live on."""
    url = sqlalchemy_url(settings)
    with _lock:
        found = _backends.get(url)
    if found is not None:
        return found
    with connect(settings, autocommit=True) as conn:
        found = detect_backend(conn)
    with _lock:
        first = url not in _backends
        _backends[url] = found
    if first:
        log.info("market store: %s", found.describe())
    return found


def require_schema(settings: Settings) -> None:
    """Raise ConfigurationError when the market tables are missing (``hft db migrate`` not run)."""
    with connect(settings, autocommit=True) as conn:
        row = conn.execute("SELECT to_regclass('market.ticks'), to_regclass('market.bars')").fetchone()
    if row is None or row[0] is None or row[1] is None:
        raise ConfigurationError("market tables missing: run `hft db migrate`")
