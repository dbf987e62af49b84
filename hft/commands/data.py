"""``hft data fetch|import`` (and ``load``, added by hft.commands.storage): market history files.

* ``fetch`` downloads klines/trades zips in data.binance.vision's layout from ``HFT_ARCHIVE_URL``
  (``https://`` or ``file://``) into the local cache, each verified against its ``.CHECKSUM``;
* ``import`` reads plain OHLCV CSV files (the ``klines_*`` files users hold), checks them, reports
  rows, range and gaps, and writes a normalised Parquet copy;
* ``load`` (storage) writes klines into ``market.bars``.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

console = Console()
data_app = typer.Typer(
    help="Market data: archive downloads, OHLCV imports, history loading.", no_args_is_help=True
)


def _fail(exc: Exception) -> typer.Exit:
    console.print(f"[red]error:[/red] {exc}")
    return typer.Exit(1)


@data_app.command("fetch")
def fetch(
    symbols: Annotated[list[str], typer.Option("--symbol", help="Symbol (repeatable)")],
    start: Annotated[str, typer.Option(help="First day, YYYY-MM-DD")],
    end: Annotated[str, typer.Option(help="Last day, YYYY-MM-DD (inclusive)")],
    kind: Annotated[str, typer.Option(help="klines, trades or aggTrades")] = "klines",
    interval: Annotated[str, typer.Option(help="Kline interval")] = "15m",
    market: Annotated[str, typer.Option(help="spot, futures/um or futures/cm")] = "spot",
    period: Annotated[str, typer.Option(help="auto (whole months monthly), monthly or daily")] = "auto",
    base_url: Annotated[str | None, typer.Option(help="Archive base URL (default: HFT_ARCHIVE_URL)")] = None,
    cache: Annotated[Path | None, typer.Option(help="Cache directory (default: HFT_HOME/archive)")] = None,
    refresh: Annotated[bool, typer.Option(help="Download again even when cached")] = False,
) -> None:
    """Download archive zips (checksums verified) into the cache; print what was fetched."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

    from hft.config import get_settings
    from hft.market.archive import Archive, ArchiveError, plan_files, read_klines_zip, read_trades_zip

    s = get_settings()
    try:
        first, last = date.fromisoformat(start), date.fromisoformat(end)
        files = [
            f
            for sym in symbols
            for f in plan_files(
                kind, sym, first, last, interval if kind == "klines" else None, market, period
            )
        ]
    except ValueError as exc:
        raise _fail(exc) from exc
    table = Table("file", "rows", "first", "last", "path")
    with Progress(
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(), console=console
    ) as progress:
        tasks: dict[str, object] = {}

        def report(name: str, done: int, total: int | None) -> None:
            if name not in tasks:
                tasks[name] = progress.add_task(name, total=total)
            progress.update(tasks[name], completed=done, total=total)  # type: ignore[arg-type]

        archive = Archive(base_url or s.archive_url, cache or s.home_dir / "archive", progress=report)
        try:
            for f in files:
                path = archive.fetch(f, refresh=refresh)
                if kind == "klines":
                    df = read_klines_zip(path)
                    table.add_row(f.name, f"{len(df):,}", str(df.index[0]), str(df.index[-1]), str(path))
                elif kind == "trades":
                    tr = read_trades_zip(path)
                    table.add_row(
                        f.name, f"{len(tr):,}", str(tr["time"].iloc[0]), str(tr["time"].iloc[-1]), str(path)
                    )
                else:
                    table.add_row(f.name, "", "", "", str(path))
        except ArchiveError as exc:
            console.print(table)
            raise _fail(exc) from exc
    console.print(table)


@data_app.command("import")
def import_ohlcv(
    files: Annotated[list[Path], typer.Argument(help="OHLCV/kline CSV files (.csv or .csv.gz)")],
    symbol: Annotated[str | None, typer.Option(help="Symbol, when the file name does not say")] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Directory for the normalised Parquet copies "
            "(default: HFT_HOME/data/klines; 'none' to only check)"
        ),
    ] = None,
) -> None:
    """Read OHLCV CSV files (ms or µs open times), check them, report gaps, write Parquet."""
    from hft.config import get_settings
    from hft.market.ohlcv import OHLCVFormatError, read_ohlcv_csv, symbol_from_filename

    s = get_settings()
    target = None if out is not None and str(out) == "none" else (out or s.home_dir / "data" / "klines")
    table = Table("file", "symbol", "interval", "rows", "first open", "last open", "missing bars", "written")
    for path in files:
        try:
            df = read_ohlcv_csv(path)
        except (OHLCVFormatError, ValueError, OSError) as exc:
            raise _fail(ValueError(f"{path}: {exc}")) from exc
        sym = symbol or symbol_from_filename(path) or "UNKNOWN"
        step = df.index.to_series().diff().dropna()
        interval = step.mode().iloc[0] if len(step) else None
        missing = int(((step / interval) - 1).clip(lower=0).sum()) if interval is not None else 0
        label = _interval_label(interval)
        written = ""
        if target is not None:
            dest = Path(target) / sym / f"{label}.parquet"
            dest.parent.mkdir(parents=True, exist_ok=True)
            df.to_parquet(dest)
            written = str(dest)
        table.add_row(
            path.name,
            sym,
            label,
            f"{len(df):,}",
            str(df.index[0]),
            str(df.index[-1]),
            f"{missing:,}",
            written,
        )
    console.print(table)


def _interval_label(step: object) -> str:
    import pandas as pd

    if step is None:
        return "unknown"
    seconds = int(pd.Timedelta(step).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def register(app: typer.Typer) -> None:
    """Add the ``data`` group to ``hft`` (other modules add commands to ``data_app``)."""
    app.add_typer(data_app, name="data")
