"""``hft validate ticks|bars|features`` and ``hft airflow standalone|login|env|dags|cli``."""

from __future__ import annotations

import json
import os
import shlex
import sys
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console

console = Console()
airflow_app = typer.Typer(
    help="Airflow of the embedded stack (AIRFLOW_HOME under the stack's home).", no_args_is_help=True
)


def _when(value: str) -> datetime:
    ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def validate(
    kind: Annotated[str, typer.Argument(help="ticks, bars or features")],
    start: Annotated[str, typer.Option(help="Partition start, ISO UTC (e.g. 2024-08-09T00:00Z)")],
    end: Annotated[str, typer.Option(help="Partition end (exclusive), ISO UTC")],
    symbol: Annotated[
        list[str] | None, typer.Option("--symbol", help="Symbols (default: settings.symbols)")
    ] = None,
) -> None:
    """Validate one partition with its Great Expectations suite; exit 1 when a check fails."""
    from hft.config import get_settings
    from hft.quality.validate import KINDS
    from hft.quality.validate import validate as run

    if kind not in KINDS:
        raise typer.BadParameter(f"one of {', '.join(KINDS)}", param_hint="KIND")
    summary = run(get_settings(), kind, _when(start), _when(end), symbols=symbol or None)
    console.print(summary.text(), markup=False, highlight=False)
    if not summary.success:
        raise typer.Exit(1)


@airflow_app.command("standalone")
def standalone() -> None:
    """Run ``airflow standalone`` in the stack's environment (what ``hft up`` supervises)."""
    from hft.config import get_settings
    from hft.devstack.airflow import airflow_env, airflow_home

    settings = get_settings()
    airflow_home(settings).mkdir(parents=True, exist_ok=True)
    binary = os.path.join(os.path.dirname(sys.executable), "airflow")
    sys.stdout.flush()
    # replaces this process, so the supervisor's process group is Airflow's
    os.execve(binary, [binary, "standalone"], airflow_env(settings))  # noqa: S606


@airflow_app.command("login")
def login() -> None:
    """Print the Airflow URL, the admin user and the generated password (once Airflow has started)."""
    from hft.config import get_settings
    from hft.devstack.airflow import admin_passwords_file, airflow_url

    settings = get_settings()
    path = admin_passwords_file(settings)
    console.print(f"url      {airflow_url(settings)}/")
    console.print(f"user     {settings.airflow_admin_user}")
    if path.exists():
        password = json.loads(path.read_text()).get(settings.airflow_admin_user, "?")
        console.print(f"password {password}   (from {path})", markup=False)
    else:
        console.print(f"password not generated yet: it appears in {path} once Airflow has started (hft up)")


@airflow_app.command("env")
def env() -> None:
    """Print the Airflow environment as shell exports (``eval "$(hft airflow env)"``)."""
    from hft.config import get_settings
    from hft.devstack.airflow import airflow_env

    for key, value in sorted(airflow_env(get_settings(), base={}).items()):
        if key != "PATH":
            print(f"export {key}={shlex.quote(value)}")


@airflow_app.command("dags")
def dags() -> None:
    """Load dags/ into a DagBag and print each DAG with its tags and retries (exit 1 on import errors)."""
    from hft.config import get_settings
    from hft.devstack.airflow import dag_integrity

    report = dag_integrity(get_settings())
    for dag_id, info in sorted(report["dags"].items()):
        console.print(
            f"{dag_id:24} tags={info['tags']} min_retries={info['min_retries']} schedule={info['schedule']}",
            markup=False,
        )
    for path, error in report["import_errors"].items():
        console.print(f"[red]import error[/red] {path}: {error}")
    if report["import_errors"]:
        raise typer.Exit(1)


@airflow_app.command("cli", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def cli(ctx: typer.Context) -> None:
    """Run any ``airflow`` command in the stack's environment (``hft airflow cli dags list``)."""
    from hft.config import get_settings
    from hft.devstack.airflow import airflow_env, airflow_home

    settings = get_settings()
    airflow_home(settings).mkdir(parents=True, exist_ok=True)
    binary = os.path.join(os.path.dirname(sys.executable), "airflow")
    sys.stdout.flush()
    os.execve(binary, [binary, *ctx.args], airflow_env(settings))  # noqa: S606


def register(app: typer.Typer) -> None:
    """Add ``validate`` and ``airflow`` to ``hft``."""
    app.command("validate")(validate)
    app.add_typer(airflow_app, name="airflow")
