"""The ``hft`` command. Each area adds its subcommands from a module in ``hft.commands``.

Command modules keep heavy imports (feast, torch, mlflow, ...) inside their functions so that
``hft --help`` stays fast.
"""

from __future__ import annotations

import importlib
import pkgutil

import typer

import hft.commands

app = typer.Typer(
    name="hft",
    help="Crypto HFT MLOps: market data in, features, models, serving, paper trading, orchestration.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


def _register_commands() -> None:
    for mod in sorted(pkgutil.iter_modules(hft.commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"hft.commands.{mod.name}")
        module.register(app)


_register_commands()


def main() -> None:
    """Entry point of the ``hft`` script."""
    app()


if __name__ == "__main__":
    main()
