"""``hft bot halt|resume|reduce|status``: the trading bot's kill switch and its book; ``hft shadow``."""

from __future__ import annotations

import getpass
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from sqlalchemy import Engine

console = Console()
bot_app = typer.Typer(
    help="The paper-trading bot: kill switch (halt/resume/reduce) and status.", no_args_is_help=True
)


def _engine() -> Engine:
    from hft.config import get_settings
    from hft.storage.db import engine, migrate

    s = get_settings()
    migrate(s)
    return engine(s)


def _set(state: str, reason: str) -> None:
    from hft.config import TransientError
    from hft.trading.bot import set_state
    from hft.trading.strategy import TradingState

    try:
        set_state(_engine(), TradingState(state), reason, getpass.getuser())
    except TransientError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    console.print(f"bot state: [bold]{state}[/bold] ({reason})")


@bot_app.command("halt")
def halt(reason: Annotated[str, typer.Option(help="Why (stored with the state)")] = "manual halt") -> None:
    """Stop new intents at once (the bot checks the state before every intent)."""
    _set("halted", reason)


@bot_app.command("resume")
def resume(
    reason: Annotated[str, typer.Option(help="Why (stored with the state)")] = "manual resume",
) -> None:
    """Trade again (also after the daily loss limit halted the bot)."""
    _set("active", reason)


@bot_app.command("reduce")
def reduce(
    reason: Annotated[str, typer.Option(help="Why (stored with the state)")] = "manual reduce",
) -> None:
    """Only sell down what is held; no new buys."""
    _set("reducing", reason)


@bot_app.command("status")
def status() -> None:
    """Show the bot state, positions, cash and the latest intents."""
    from sqlalchemy import text

    from hft.trading import store

    eng = _engine()
    with eng.connect() as conn:
        st = store.get_bot_state(conn)
        console.print(
            f"state: [bold]{st.state.value}[/bold]  reason: {st.reason}  since {st.updated_at} "
            f"by {st.updated_by or '-'}"
        )
        acct = conn.execute(text("SELECT cash, starting_cash, fees_paid FROM trading.account")).first()
        if acct is not None:
            console.print(
                f"cash {acct.cash:,.2f} (start {acct.starting_cash:,.2f}), fees paid {acct.fees_paid:,.2f}"
            )
        pos = Table("symbol", "quantity", "avg price", "realised PnL", "fees")
        for p in store.positions(conn).values():
            pos.add_row(
                p.symbol,
                f"{p.quantity:.8f}",
                f"{p.avg_price:,.2f}",
                f"{p.realized_pnl:,.2f}",
                f"{p.fees:,.2f}",
            )
        console.print(pos)
        intents = Table("decided at", "symbol", "side", "quantity", "ref price", "p(up)", "status")
        rows = conn.execute(
            text(
                "SELECT decided_at, symbol, side, quantity, ref_price, prob_up, status FROM trading.intents "
                "ORDER BY decided_at DESC LIMIT 10"
            )
        )
        for r in rows:
            intents.add_row(
                str(r.decided_at),
                r.symbol,
                r.side,
                f"{r.quantity:.8f}",
                f"{r.ref_price:,.2f}",
                f"{r.prob_up:.3f}",
                r.status,
            )
        console.print(intents)


def shadow(
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table")] = False,
) -> None:
    """The live record: every model version the API scored closed bars with (champion, challenger),
    judged by the next bar: accuracy, ROC-AUC, paper trades and PnL after costs."""
    import json
    import math

    from hft.config import get_settings
    from hft.trading.shadow import summary

    s = get_settings()
    with _engine().connect() as conn:
        rows = summary(conn, s)
    if as_json:
        print(json.dumps([r.as_dict() for r in rows], indent=2, default=str))
        return
    if not rows:
        console.print(f"no live record of {s.model_name} yet (the API writes it as bars close)")
        return
    table = Table(
        "version",
        "role",
        "bars",
        "accuracy",
        "ROC-AUC",
        "base rate",
        "trades",
        "gross bps/trade",
        "net PnL",
        "since",
    )

    def num(v: float, fmt: str) -> str:
        return "-" if math.isnan(v) else format(v, fmt)

    for r in rows:
        table.add_row(
            r.model_version,
            r.role,
            str(r.decisions),
            num(r.accuracy, ".3f"),
            num(r.roc_auc, ".3f"),
            num(r.base_rate, ".3f"),
            str(r.trades),
            num(r.gross_edge_bps, ".2f"),
            f"{r.net_pnl:,.2f}",
            r.since.strftime("%Y-%m-%d %H:%M") if r.since else "-",
        )
    console.print(f"live record of {s.model_name} (one-bar paper trades, fees and slippage both sides)")
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add ``hft bot`` and ``hft shadow`` to the CLI."""
    app.add_typer(bot_app, name="bot")
    app.command("shadow")(shadow)
