"""``hft data ...``: market data commands (history loading; the market engineer adds more here)."""

from __future__ import annotations

import typer

data_app = typer.Typer(help="Market data: load history, archives.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add the ``data`` group to ``hft`` (other modules add commands to ``data_app``)."""
    app.add_typer(data_app, name="data")
