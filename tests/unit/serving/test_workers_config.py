"""The Celery app's contract: task names, late acks, retries on TransientError, the beat schedule."""

from __future__ import annotations

from hft.config import TransientError


def test_tasks_are_named_acked_late_and_retry_transient_errors() -> None:
    import workers.tasks  # noqa: F401 - the worker imports it through `include`
    from workers.app import app

    names = set(app.tasks.keys())
    assert {"orders.simulate", "orders.resend_pending", "reports.pnl", "reports.daily"} <= names
    simulate = app.tasks["orders.simulate"]
    assert simulate.acks_late is True
    assert TransientError in simulate.autoretry_for
    assert app.conf.task_reject_on_worker_lost is True
    assert app.conf.worker_prefetch_multiplier == 1


def test_beat_runs_the_reports_and_the_pending_resend() -> None:
    from workers.app import app, settings

    schedule = {entry["task"]: entry for entry in app.conf.beat_schedule.values()}
    assert schedule["reports.pnl"]["schedule"] == settings.pnl_report_every_s
    assert {"reports.daily", "orders.resend_pending"} <= set(schedule)
