"""Fixtures of the serving e2e test: the integration fixtures (stack, migrated database, a real
registered ensemble, a real Celery worker) reused as they are."""

from __future__ import annotations

from tests.integration.serving.conftest import (  # noqa: F401 - pytest fixtures by import
    celery_worker,
    clean_book,
    registered_model,
    serving_settings,
    trading_engine,
)
