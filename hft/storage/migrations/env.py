"""Alembic environment of the market database (schemas market, features, trading).

The URL comes from ``hft.storage.db.alembic_config`` (``hft db migrate``) or, when Alembic is
run by hand, from the HFT_* settings. Migrations are written with ``op.execute`` SQL: there is
no ORM metadata to autogenerate from.
"""

from __future__ import annotations

import logging.config

from alembic import context
from sqlalchemy import create_engine, pool

from hft.config import get_settings
from hft.storage.db import sqlalchemy_url

config = context.config

if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    logging.config.fileConfig(config.config_file_name, disable_existing_loggers=False)


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    return sqlalchemy_url(get_settings())


def run_migrations_offline() -> None:
    """Emit the SQL instead of running it (``alembic upgrade head --sql``)."""
    context.configure(url=_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run the migrations in one transaction per revision on a fresh connection."""
    connectable = create_engine(_url(), poolclass=pool.NullPool)
    with connectable.connect() as connection:
        context.configure(connection=connection, transaction_per_migration=True)
        with context.begin_transaction():
            context.run_migrations()
    connectable.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
