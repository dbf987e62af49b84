"""``hft demo``: the whole main job from nothing, as `make demo` runs it.

1. the embedded stack; 2. the schema; 3. bar history for warm-up and training (the shared
klines on the replay exchange, data.binance.vision otherwise); 4. the Feast registry; 5. a first
model when the registry has no champion (trained, then promoted through the gate); 6. every
application process under supervisord; 7. the URLs.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

if TYPE_CHECKING:
    from hft.config import Settings

console = Console()


def _hft(*args: str) -> None:
    """Run an ``hft`` subcommand as its own process (its own progress bars and exit code)."""
    cmd = [str(Path(sys.executable).with_name("hft")), *args]
    console.print(f"[bold]$ hft {' '.join(args)}[/bold]")
    if subprocess.call(cmd) != 0:
        console.print(f"[red]hft {args[0]} failed[/red]")
        raise typer.Exit(1)


def _history_source(s: Settings) -> str:
    """Where bar history comes from: the shared klines offline, Binance's archive live."""
    local = s.data_dir / f"klines_{s.bar_interval}"
    if s.market == "replay" or local.exists():
        if not local.exists():
            console.print(f"[red]no history at {local} (HFT_DATA_DIR)[/red]")
            raise typer.Exit(1)
        return str(local)
    today = datetime.now(UTC).date()
    start = (today.replace(day=1) - timedelta(days=365)).replace(day=1)
    cache = s.home_dir / "archive"
    _hft(
        "data",
        "fetch",
        *[a for sym in s.symbols for a in ("--symbol", sym)],
        "--start",
        start.isoformat(),
        "--end",
        (today - timedelta(days=1)).isoformat(),
        "--interval",
        s.bar_interval,
        "--cache",
        str(cache),
    )
    return str(cache)


def _stream_start(s: Settings) -> datetime:
    """When the market stream begins: the recording's first trade on replay, now when live."""
    if s.market != "replay":
        return datetime.now(UTC)
    from hft.market.replay import default_capture_paths

    first_ms: list[int] = []
    for path in default_capture_paths(s.data_dir, s.symbols):
        with gzip.open(path, "rt") as fh:
            for line in fh:
                if '"e":"trade"' in line:
                    msg = json.loads(line.split(" ", 1)[1])
                    first_ms.append(int(msg.get("data", msg)["T"]))
                    break
    if not first_ms:
        console.print("[red]the replay recording holds no trades[/red]")
        raise typer.Exit(1)
    return datetime.fromtimestamp(min(first_ms) / 1000, UTC)


def _backfill_before_stream(s: Settings) -> None:
    """Offline feature rows for the bars just before the stream, so sequence models have their window."""
    from hft.storage.bars import interval_delta

    step = interval_delta(s.bar_interval)
    start = _stream_start(s)
    end = datetime.fromtimestamp(start.timestamp() // step.total_seconds() * step.total_seconds(), UTC)
    _hft(
        "features",
        "backfill",
        *[a for sym in s.symbols for a in ("--symbol", sym)],
        "--interval",
        s.bar_interval,
        "--start",
        (end - 200 * step).isoformat(),
        "--end",
        end.isoformat(),
        "--no-materialize",
    )


def _has_champion(s: Settings) -> bool:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from hft.config import use_mlflow

    try:
        MlflowClient(use_mlflow(s)).get_model_version_by_alias(s.model_name, "champion")
    except MlflowException:
        return False
    return True


def demo(
    train: Annotated[bool, typer.Option(help="Train a first model when no champion exists")] = True,
    budget_minutes: Annotated[
        float | None, typer.Option(help="Training budget (HFT_TRAIN_BUDGET_MINUTES)")
    ] = None,
) -> None:
    """Bring up the stack, load history, train and promote a first model if needed, start everything."""
    from hft.commands.stack import _print_status
    from hft.config import ConfigurationError, get_settings
    from hft.devstack.stack import Stack
    from hft.devstack.supervisor import Supervisor

    s = get_settings()
    console.print(
        f"market: [bold]{s.market}[/bold] symbols: {', '.join(s.symbols)} bars: {s.bar_interval} "
        f"state: {s.home_dir}"
    )
    st = Stack(s)
    try:
        with console.status("starting the stack") as status:
            st.up(progress=lambda name: status.update(f"starting {name}"))
    except (ConfigurationError, TimeoutError, subprocess.CalledProcessError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    _hft("db", "migrate")
    source = _history_source(s)
    _hft("data", "load", "--data", source)
    _hft("features", "apply")
    _backfill_before_stream(s)
    if train and not _has_champion(s):
        budget = budget_minutes if budget_minutes is not None else s.train_budget_minutes
        _hft(
            "train",
            "--data",
            source,
            "--interval",
            s.bar_interval,
            "--start",
            s.train_start,
            "--end",
            s.train_end,
            "--budget-minutes",
            str(budget),
        )
        _hft("promote")
    Supervisor(s).start()
    _print_status(st)
    console.print("[green]running.[/green] `hft stack logs <process>` for logs, `hft down` to stop.")


def register(app: typer.Typer) -> None:
    """Add ``hft demo``."""
    app.command("demo")(demo)
