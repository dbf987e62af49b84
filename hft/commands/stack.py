"""``hft stack up|down|status|logs``, ``hft up|down`` and ``hft run <process>``."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from hft.devstack.stack import Stack

console = Console()
stack_app = typer.Typer(
    help="The embedded local stack: PostgreSQL, Redis, Apache Kafka, MLflow, exporters, Prometheus.",
    no_args_is_help=True,
)


def _stack() -> Stack:
    from hft.config import get_settings
    from hft.devstack.stack import Stack

    return Stack(get_settings())


def _fail(exc: Exception) -> typer.Exit:
    console.print(f"[red]error:[/red] {exc}")
    return typer.Exit(1)


@stack_app.command("up")
def stack_up(
    parts: Annotated[
        list[str] | None,
        typer.Argument(
            help="Only these parts (postgres redis kafka mlflow postgres-exporter redis-exporter "
            "airflow-metrics prometheus)"
        ),
    ] = None,
) -> None:
    """Start the embedded services (idempotent)."""
    from hft.config import ConfigurationError

    st = _stack()
    try:
        with console.status("starting the stack") as status:
            st.up(parts, progress=lambda name: status.update(f"starting {name}"))
    except (ConfigurationError, TimeoutError, subprocess.CalledProcessError, KeyError) as exc:
        raise _fail(exc) from exc
    _print_status(st)


@stack_app.command("down")
def stack_down() -> None:
    """Stop what ``stack up`` started."""
    _stack().down()
    console.print("stack stopped")


@stack_app.command("status")
def stack_status(
    wide: Annotated[bool, typer.Option("--wide", "-w", help="One unwrapped line per part")] = False,
) -> None:
    """Show each service and process, its URL and health (exit 1 when one that should run is down)."""
    st = _stack()
    healthy = _print_status(st, wide=wide)
    if not healthy:
        raise typer.Exit(1)


@stack_app.command("logs")
def stack_logs(
    part: Annotated[
        str,
        typer.Argument(
            help="postgres, redis, kafka (kafka-2, kafka-3 in a cluster), mlflow, an exporter, prometheus "
            "or a process name"
        ),
    ],
    lines: Annotated[int, typer.Option("-n", help="Lines to show")] = 50,
    follow: Annotated[bool, typer.Option("-f", help="Follow")] = False,
) -> None:
    """Show the log of one part or process."""
    path = _stack().logfile(part)
    if not path.exists() or path.stat().st_size == 0:
        raise _fail(FileNotFoundError(f"no log for {part} at {path}"))
    cmd = ["tail", "-n", str(lines), *(["-f"] if follow else []), str(path)]
    raise typer.Exit(subprocess.call(cmd))


@stack_app.command("watch")
def stack_watch(
    interval: Annotated[float, typer.Option(help="Seconds between checks")] = 2.0,
) -> None:
    """Restart any stack service that crashes, until SIGTERM (run by `hft up` under supervisord)."""
    import signal
    import threading

    from hft.config import get_settings
    from hft.logs import setup_logging

    setup_logging(get_settings().log_level, "stack-watchdog")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    _stack().watch(stop, interval)


@stack_app.command("credentials")
def stack_credentials() -> None:
    """Print the logins of the embedded services (generated into HFT_HOME/credentials.json)."""
    from hft.config import credentials_file, get_settings

    s = get_settings()
    rows = []
    if not s.postgres_url:
        pg = (s.postgres_user, s.postgres_password, f"{s.bind_host}:{s.port('postgres')}")
        rows.append(("postgres", *pg))
    if not s.redis_url:
        rows.append(("redis", "default", s.redis_password, f"{s.bind_host}:{s.port('redis')}"))
    sup = (s.supervisor_user, s.supervisor_password, f"http://{s.bind_host}:{s.port('supervisor')}/")
    rows.append(("supervisor", *sup))
    if not s.mlflow_tracking_uri:
        rows.append(("mlflow", s.mlflow_username, s.mlflow_password, s.mlflow_uri))
        rows.append(("mlflow", f"{s.mlflow_username}-reader", s.mlflow_reader_password, "(read only)"))
    dash = (s.dashboard_user, s.dashboard_password, f"http://{s.bind_host}:{s.port('dashboard')}/")
    rows.append(("dashboard", *dash))
    for name, user, password, where in rows:
        # plain lines: a table would cut a password short at 80 columns
        typer.echo(f"{name:<11} {where:<28} user {user:<10} password {password.get_secret_value()}")
    typer.echo(f"(from {credentials_file(s.home_dir)}, owner only; HFT_*_PASSWORD settings choose your own)")


STATE_STYLE = {
    "healthy": "green",
    "down": "red",
    "absent": "yellow",
    "stopped": "dim",
    "starting": "yellow",
    "not ready": "yellow",
}


def _print_status(st: Stack, wide: bool = False) -> bool:
    """Print a row per stack service, application process and supervisord; False when one that
    should answer does not (``stopped``, ``absent``, ``starting`` and ``not ready`` do not count).

    The table fits the terminal (80 columns when not a terminal): a part's note goes under its URL
    and long URLs and paths wrap, whole. ``wide`` prints one unwrapped line per part instead.
    """
    from hft.devstack.apps import app_status

    rows = [*st.status(), *app_status(st.s)]
    out = Console(soft_wrap=True) if wide else Console()
    name_w = max(len(p.name) for p in rows)
    if wide:
        for p in rows:
            note = p.detail + ("" if p.managed else " (external)")
            line = Text(f"{p.name:<{name_w}}  ")
            line.append(f"{p.label:<9}", style=STATE_STYLE.get(p.label, ""))
            line.append(f"  {p.url}" + (f"  ({note})" if note else ""))
            out.print(line, highlight=False)
    else:
        table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
        table.add_column("part", no_wrap=True)
        table.add_column("health", no_wrap=True)
        table.add_column("url / note", overflow="fold")
        for p in rows:
            note = p.detail + ("" if p.managed else " (external)")
            style = STATE_STYLE.get(p.label, "")
            where = Text(p.url, overflow="fold")
            if note:
                where.append("\n" + note, style="dim")
            table.add_row(p.name, Text(p.label, style=style), where)
        out.print(table)
    return not any(p.failing for p in rows)


def up(
    processes: Annotated[list[str] | None, typer.Argument(help="Only these application processes")] = None,
) -> None:
    """Start the stack and the application processes under supervisord."""
    from hft.config import ConfigurationError
    from hft.devstack.supervisor import Supervisor

    st = _stack()
    try:
        st.up()
        Supervisor(st.s, processes or None).start()
    except (ConfigurationError, TimeoutError, subprocess.CalledProcessError, FileNotFoundError) as exc:
        raise _fail(exc) from exc
    _print_status(st)


def down() -> None:
    """Stop the application processes, then the stack."""
    from hft.devstack.supervisor import Supervisor

    st = _stack()
    Supervisor(st.s).stop()
    st.down()
    console.print("all stopped")


def run(name: Annotated[str, typer.Argument(help="Process name, e.g. api, worker, tick-ingestor")]) -> None:
    """Run one application process in the foreground (what the supervisor runs)."""
    from hft.config import get_settings
    from hft.devstack.supervisor import PROCESSES

    specs = {p.name: p for p in PROCESSES}
    if name not in specs:
        raise _fail(ValueError(f"unknown process {name!r}; one of: {', '.join(specs)}"))
    spec = specs[name]
    cmd = spec.command(get_settings())
    sys.stdout.flush()
    from hft.devstack.host import child_env

    os.execvpe(cmd[0], cmd, child_env(spec.env))  # noqa: S606 - replaces this process on purpose


def register(app: typer.Typer) -> None:
    """Add the stack commands to ``hft``."""
    app.add_typer(stack_app, name="stack")
    app.command("up")(up)
    app.command("down")(down)
    app.command("run")(run)
