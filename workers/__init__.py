"""Celery app and tasks: ``celery -A workers.app worker`` / ``beat``."""
