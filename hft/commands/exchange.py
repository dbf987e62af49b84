"""``hft exchange``: the local replay exchange (recorded Binance trades over WS and REST)."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path
from typing import Annotated

import typer


def exchange(
    host: Annotated[str | None, typer.Option(help="Bind address (default: HFT_BIND_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: the stack's exchange port)")] = None,
    speed: Annotated[
        str | None, typer.Option(help="x1, xN (e.g. x100) or max (default: HFT_REPLAY_SPEED)")
    ] = None,
    loop: Annotated[
        bool, typer.Option("--loop/--no-loop", help="Replay again with shifted ids and times")
    ] = False,
    source: Annotated[
        list[Path] | None,
        typer.Option(
            help="Capture files (*.txt.gz), archive trade files, or a directory (default: HFT_DATA_DIR's spot "
            "captures of HFT_SYMBOLS)"
        ),
    ] = None,
    max_trades: Annotated[
        int, typer.Option(help="Replay only the first N trades of the recording (0: all)")
    ] = 0,
    metrics_port: Annotated[
        int | None, typer.Option(help="Prometheus port (default: metrics_exchange; 0: none)")
    ] = None,
    drop_every: Annotated[int, typer.Option(help="Fault: close each connection after every N messages")] = 0,
    skip_every: Annotated[int, typer.Option(help="Fault: every N messages skip --skip messages")] = 0,
    skip: Annotated[int, typer.Option(help="Fault: how many consecutive messages to skip")] = 1,
    malformed_every: Annotated[
        int, typer.Option(help="Fault: a malformed frame before every M messages")
    ] = 0,
) -> None:
    """Serve recorded Binance trades over /ws, /stream and /api/v3 at a chosen speed."""
    from hft.bus.runtime import run_event_loop
    from hft.config import get_settings
    from hft.logs import setup_logging
    from hft.market.exchange import Faults, ReplayExchange, parse_speed, serve
    from hft.market.replay import load_source

    s = get_settings()
    setup_logging(s.log_level, "exchange")
    log = logging.getLogger("hft.exchange")
    try:
        speed_value = parse_speed(speed or s.replay_speed)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    src: Path | list[Path] = list(source) if source else s.data_dir
    timeline = load_source(src, s.symbols)
    if max_trades:
        timeline = timeline.head(max_trades)
    log.info("recording: %d trades of %s from %s", len(timeline.trades), timeline.symbols, timeline.sources)
    ex = ReplayExchange(
        timeline, speed=speed_value, loop=loop, faults=Faults(drop_every, skip_every, skip, malformed_every)
    )
    mport = s.port("metrics_exchange") if metrics_port is None else metrics_port

    async def _main() -> None:
        stop = asyncio.Event()
        lp = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            lp.add_signal_handler(sig, stop.set)
        await serve(ex, host or s.bind_host, port or s.port("exchange"), stop, metrics_port=mport or None)

    run_event_loop(_main())  # uvloop where installed (hft.bus.runtime)


def register(app: typer.Typer) -> None:
    """Add ``hft exchange`` to ``hft``."""
    app.command("exchange")(exchange)
