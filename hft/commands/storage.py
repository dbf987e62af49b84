"""``hft db migrate|info`` and ``hft data load``: the market store's schema and history."""

from __future__ import annotations

import functools
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from hft.commands.data import data_app

console = Console()
db_app = typer.Typer(help="The market database: migrations and what it holds.", no_args_is_help=True)


def _fail(exc: Exception) -> typer.Exit:
    console.print(f"[red]error:[/red] {exc}")
    return typer.Exit(1)


@db_app.command("migrate")
def db_migrate(
    revision: Annotated[str, typer.Option(help="Alembic revision to upgrade to")] = "head",
) -> None:
    """Upgrade the schema (idempotent; safe while other processes migrate too)."""
    from hft.config import ConfigurationError, TransientError, get_settings
    from hft.logs import setup_logging
    from hft.storage import db

    settings = get_settings()
    setup_logging(settings.log_level, "hft")
    try:
        current = db.migrate(settings, revision)
        console.print(f"schema at [bold]{current}[/bold] on {db.backend(settings).describe()}")
    except (ConfigurationError, TransientError) as exc:
        raise _fail(exc) from exc


@db_app.command("info")
def db_info() -> None:
    """Show the backend, the schema revision and what market.ticks and market.bars hold."""
    from hft.config import TransientError, get_settings, mask_url
    from hft.storage import db

    settings = get_settings()
    try:
        backend = db.backend(settings)
        conn = db.connect(settings, autocommit=True)
    except TransientError as exc:
        raise _fail(exc) from exc
    with conn:
        rev = conn.execute("SELECT to_regclass('public.alembic_version')").fetchone()
        version = None
        if rev and rev[0]:
            row = conn.execute("SELECT version_num FROM public.alembic_version").fetchone()
            version = row[0] if row else None
        console.print(f"database  {mask_url(db.libpq_url(settings))}")
        console.print(f"backend   {backend.describe()}")
        console.print(f"revision  {version or 'none (run hft db migrate)'}")
        if not version:
            return
        ticks = Table("symbol", "venue", "ticks", "first trade", "last trade", title="market.ticks")
        for r in conn.execute(
            "SELECT symbol, venue, count(*), min(trade_time), max(trade_time) FROM market.ticks "
            "GROUP BY symbol, venue ORDER BY symbol, venue"
        ):
            ticks.add_row(r[0], r[1], f"{r[2]:,}", str(r[3]), str(r[4]))
        console.print(ticks)
        bars = Table("symbol", "interval", "source", "bars", "first open", "last open", title="market.bars")
        for r in conn.execute(
            "SELECT symbol, interval, source, count(*), min(open_time), max(open_time) "
            "FROM market.bars GROUP BY symbol, interval, source ORDER BY 1, 2, 3"
        ):
            bars.add_row(r[0], r[1], r[2], f"{r[3]:,}", str(r[4]), str(r[5]))
        console.print(bars)


def data_load(
    data: Annotated[
        list[str],
        typer.Option(
            "--data",
            help="OHLCV/kline CSV(.gz), archive .zip, a directory "
            "of them, or a file:// or https:// URL (repeatable)",
        ),
    ],
    symbol: Annotated[str | None, typer.Option(help="Symbol, when the file name does not say")] = None,
    interval: Annotated[
        str | None, typer.Option(help="Interval (1m, 15m, ...), when the name does not say")
    ] = None,
) -> None:
    """Load klines into market.bars (COPY + upsert: loading twice changes nothing)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from hft.config import ConfigurationError, TransientError, get_settings
    from hft.market.ohlcv import OHLCVFormatError
    from hft.storage import db, history

    settings = get_settings()
    results = []
    try:
        db.migrate(settings)
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            for source in data:
                for kf in history.read_klines(source, symbol, interval):
                    task = progress.add_task(f"{kf.symbol} {kf.interval} {kf.name}", total=len(kf.frame))
                    results.append(
                        history.load_klines(
                            settings, kf, progress=functools.partial(_advance, progress, task)
                        )
                    )
    except (ConfigurationError, TransientError, OHLCVFormatError, ValueError) as exc:
        raise _fail(exc) from exc
    table = Table("file", "symbol", "interval", "rows", "inserted/changed", "first", "last")
    for r in results:
        table.add_row(
            r.name, r.symbol, r.interval, f"{r.rows:,}", f"{r.changed:,}", str(r.first), str(r.last)
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add ``hft db`` and ``hft data load``."""
    app.add_typer(db_app, name="db")
    data_app.command("load")(data_load)


def _advance(progress: Any, task: Any, n: int) -> None:
    progress.advance(task, n)
