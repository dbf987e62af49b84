"""``hft features backfill|apply|env|show``: the offline features and the Feast repository."""

from __future__ import annotations

import shlex
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from hft.config import Settings

features_app = typer.Typer(
    help="Bar features: backfill from market.bars, Feast apply, online read.", no_args_is_help=True
)


def _when(value: str) -> datetime:
    """Parse an ISO date/time; a naive value is UTC."""
    ts = datetime.fromisoformat(value)
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def _fail(exc: Exception) -> typer.Exit:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    return typer.Exit(1)


@features_app.command("backfill")
def backfill(
    symbol: Annotated[list[str], typer.Option(help="Symbol (repeatable)")],
    start: Annotated[str, typer.Option(help="First bar open time, ISO (UTC when naive)")],
    end: Annotated[str, typer.Option(help="End of the partition (exclusive), ISO")],
    interval: Annotated[str | None, typer.Option(help="Bar interval (default: HFT_BAR_INTERVAL)")] = None,
    materialize: Annotated[
        bool,
        typer.Option(
            "--materialize/--no-materialize", help="Also load the newest rows into the online store"
        ),
    ] = False,
) -> None:
    """Compute features from market.bars for [start, end) and upsert them into features.bar_features."""
    from hft.config import ConfigurationError, TransientError, get_settings
    from hft.features.backfill import backfill as run_backfill
    from hft.storage import db

    s = get_settings()
    try:
        db.migrate(s)
        for sym in symbol:
            n = run_backfill(
                s, sym, interval or s.bar_interval, _when(start), _when(end), materialize=materialize
            )
            typer.echo(
                f"{sym} {interval or s.bar_interval}: {n} feature rows upserted"
                + (" and materialized" if materialize and n else "")
            )
    except (ConfigurationError, TransientError, ValueError) as exc:
        raise _fail(exc) from exc


@features_app.command("apply")
def apply() -> None:
    """Register the Feast declarations of feature_repo/ (entity, sources, view, services)."""
    from hft.config import get_settings
    from hft.features.store import apply as run_apply

    names = run_apply(get_settings())
    typer.echo("applied: " + ", ".join(names))


@features_app.command("env")
def env() -> None:
    """Print the HFT_FEAST_* variables feature_store.yaml needs (for the feast CLI)."""
    from hft.config import get_settings
    from hft.features.store import feast_env

    for k, v in feast_env(get_settings()).items():
        typer.echo(f"export {k}={shlex.quote(v)}")


@features_app.command("show")
def show(symbol: Annotated[str, typer.Argument(help="Symbol, e.g. BTCUSDT")]) -> None:
    """Print the symbol's latest online features (what the API reads); an absent one says why."""
    import math

    from hft.config import ConfigurationError, get_settings
    from hft.features.online import OnlineFeatures

    s = get_settings()
    try:
        got = OnlineFeatures(s).latest(symbol)
    except ConfigurationError as exc:
        raise _fail(exc) from exc
    if got is None:
        raise _fail(LookupError(f"no online features for {symbol}"))
    feature_time, values = got
    missing = [k for k, v in values.items() if math.isnan(v)]
    reasons = _absence_reasons(s, symbol, feature_time, missing) if missing else {}
    typer.echo(f"feature_time {feature_time.isoformat()}")
    for k, v in values.items():
        if math.isnan(v):
            typer.echo(f"{k:>18}  absent: {reasons.get(k, 'no value in the online row')}")
        else:
            typer.echo(f"{k:>18} {v: .6g}")


def _absence_reasons(s: Settings, symbol: str, feature_time: datetime, names: list[str]) -> dict[str, str]:
    """Why each absent feature is absent, read from market.bars ({} when the database is unreachable)."""
    from datetime import timedelta

    from sqlalchemy.exc import SQLAlchemyError

    from hft.features.bars import interval_ns
    from hft.reporting.market import absence_reasons
    from hft.storage.db import engine

    bar_open = feature_time - timedelta(microseconds=interval_ns(s.bar_interval) // 1000)
    try:
        with engine(s).connect() as conn:
            return absence_reasons(conn, symbol, s.bar_interval, bar_open, names)
    except SQLAlchemyError:
        return {}


def register(app: typer.Typer) -> None:
    """Add ``hft features`` to the CLI."""
    app.add_typer(features_app, name="features")
