"""The Celery app: Redis broker and result backend, late acks, the reports on beat.

Tasks take ids, not objects, and call :mod:`hft.trading`; they are idempotent, so a task
redelivered after a worker died (``acks_late`` + ``task_reject_on_worker_lost``) does no
harm.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.schedules import crontab
from celery.signals import worker_init, worker_ready

from hft.config import get_settings
from hft.logs import setup_logging

settings = get_settings()

app = Celery("hft", broker=settings.redis_dsn, backend=settings.redis_dsn, include=["workers.tasks"])
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    result_expires=3600,
    timezone="UTC",
    enable_utc=True,
    broker_connection_retry_on_startup=True,
    # a task not acked within this time is redelivered; fills take milliseconds
    broker_transport_options={"visibility_timeout": 600},
    beat_schedule={
        "reports-pnl": {"task": "reports.pnl", "schedule": settings.pnl_report_every_s},
        "reports-daily-today": {
            "task": "reports.daily",
            "schedule": crontab(minute="*/30"),
            "args": ("today",),
        },
        "reports-daily-yesterday": {
            "task": "reports.daily",
            "schedule": crontab(hour="0", minute="5"),
            "args": ("yesterday",),
        },
        "orders-resend-pending": {"task": "orders.resend_pending", "schedule": 60.0},
    },
)


@worker_init.connect
def _migrate(**_: Any) -> None:
    from hft.storage.db import migrate

    setup_logging(settings.log_level, "worker")
    migrate(settings)


@worker_ready.connect
def _serve_metrics(**_: Any) -> None:
    from prometheus_client import start_http_server

    start_http_server(settings.port("metrics_worker"), addr=settings.bind_host)
