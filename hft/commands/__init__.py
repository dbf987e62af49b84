"""Subcommands of ``hft``: every module here defines ``register(app: typer.Typer)``."""
