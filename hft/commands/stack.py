"""``hft stack up|down|status|logs``, ``hft up|down`` and ``hft run <process>``."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from hft.config import Settings
    from hft.devstack.stack import Stack

console = Console()
stack_app = typer.Typer(
    help="The embedded local stack: PostgreSQL, Redis, Apache Kafka, MLflow, Prometheus.",
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
        list[str] | None, typer.Argument(help="Only these parts (postgres redis kafka mlflow prometheus)")
    ] = None,
) -> None:
    """Start the embedded services (idempotent)."""
    from hft.config import ConfigurationError

    st = _stack()
    try:
        with console.status("starting the stack") as status:
            st.up(parts, progress=lambda name: status.update(f"starting {name}"))
    except (ConfigurationError, TimeoutError, subprocess.CalledProcessError) as exc:
        raise _fail(exc) from exc
    _print_status(st)


@stack_app.command("down")
def stack_down() -> None:
    """Stop what ``stack up`` started."""
    _stack().down()
    console.print("stack stopped")


@stack_app.command("status")
def stack_status() -> None:
    """Show each part, its URL and health (exit 1 when one is unhealthy)."""
    st = _stack()
    healthy = _print_status(st)
    if not healthy:
        raise typer.Exit(1)


@stack_app.command("logs")
def stack_logs(
    part: Annotated[
        str,
        typer.Argument(
            help="postgres, redis, kafka (kafka-2, kafka-3 in a cluster), mlflow, prometheus or a process name"
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
    for name, user, password, where in rows:
        # plain lines: a table would cut a password short at 80 columns
        typer.echo(f"{name:<11} {where:<28} user {user:<9} password {password.get_secret_value()}")
    typer.echo(f"(from {credentials_file(s.home_dir)}, owner only; HFT_*_PASSWORD settings choose your own)")


def _print_status(st: Stack) -> bool:
    from hft.devstack.supervisor import Supervisor

    table = Table("part", "url", "health", "note")
    ok = True
    for p in st.status():
        required = p.name != "prometheus" or st.prometheus.available()
        ok &= p.healthy or not required
        health = (
            "[green]healthy[/green]"
            if p.healthy
            else ("[red]down[/red]" if required else "[yellow]absent[/yellow]")
        )
        table.add_row(p.name, p.url, health, p.detail + ("" if p.managed else " (external)"))
    extra = _app_urls(st.s)
    for name, url in extra.items():
        table.add_row(name, url, "", "application (hft up)")
    console.print(table)
    sup = Supervisor(st.s)
    if sup.running():
        console.print(sup.status())
    return ok


def _app_urls(s: Settings) -> dict[str, str]:
    h = s.bind_host
    return {
        "api": f"http://{h}:{s.port('api')}/docs",
        "dashboard": f"http://{h}:{s.port('dashboard')}/",
        "airflow": f"http://{h}:{s.port('airflow')}/ (user {s.airflow_admin_user}, password in "
        f"{s.home_dir / 'airflow' / 'simple_auth_manager_passwords.json.generated'})",
        "supervisor": f"http://{h}:{s.port('supervisor')}/",
    }


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
