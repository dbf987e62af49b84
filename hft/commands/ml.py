"""``hft train``, ``hft evaluate`` and ``hft promote``: the model lifecycle from the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def train(
    symbol: Annotated[
        list[str] | None, typer.Option("--symbol", help="Symbol (repeatable); settings.symbols when omitted")
    ] = None,
    interval: Annotated[
        str | None, typer.Option(help="Bar interval (settings.bar_interval when omitted)")
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(
            help="OHLCV CSV file or a directory of them (klines_<interval>); omitted (or 'store'): "
            "bars from market.bars, features from Feast's offline store (missing ones backfilled)"
        ),
    ] = None,
    start: Annotated[str | None, typer.Option(help="First day YYYY-MM-DD (settings.train_start)")] = None,
    end: Annotated[
        str | None, typer.Option(help="Last day YYYY-MM-DD, inclusive (settings.train_end)")
    ] = None,
    budget_minutes: Annotated[
        float | None, typer.Option("--budget-minutes", help="Time budget (settings.train_budget_minutes)")
    ] = None,
    model_name: Annotated[
        str | None, typer.Option("--model-name", help="Registered model (settings.model_name)")
    ] = None,
    horizon: Annotated[
        int | None,
        typer.Option(
            help="Label and trade horizon in bars (settings.label_horizon); stored with the model", min=1
        ),
    ] = None,
    label: Annotated[
        str | None,
        typer.Option(
            help="Label kind: direction (the close h bars later above the close now) or barrier (triple barrier: take-profit / stop "
            "at max(vol_64 x sqrt(h), the round trip), time limit h); default: hft.ml.train.DEFAULT_LABEL_KIND"
        ),
    ] = None,
) -> None:
    """Tune, evaluate walk-forward, log to MLflow and register; print the version URI last."""
    from hft.config import ConfigurationError, TransientError, get_settings
    from hft.logs import setup_logging
    from hft.ml.dataset import is_store
    from hft.ml.labels import LABEL_KINDS
    from hft.ml.train import DEFAULT_LABEL_KIND, train_and_register, train_and_register_from_store

    s = get_settings()
    setup_logging(s.log_level, "train")
    iv = interval or s.bar_interval
    syms, lo, hi = list(symbol or s.symbols), start or s.train_start, end or s.train_end
    budget = budget_minutes if budget_minutes is not None else s.train_budget_minutes
    kind = label or DEFAULT_LABEL_KIND
    if kind not in LABEL_KINDS:
        typer.echo(f"error: --label must be one of {', '.join(LABEL_KINDS)}", err=True)
        raise typer.Exit(2)
    try:
        if data is None or is_store(data):  # the database: market.bars + Feast's offline store
            uri = train_and_register_from_store(s, syms, iv, lo, hi, budget, model_name, horizon, kind)
        else:
            uri = train_and_register(s, syms, iv, data, lo, hi, budget, model_name, horizon, kind)
    except (ConfigurationError, TransientError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(uri)


def evaluate(
    model: Annotated[
        str, typer.Option(help="models:/name@alias, models:/name/version or runs:/<id>/ensemble")
    ],
    data: Annotated[str, typer.Option(help="OHLCV CSV (or a directory of them)")],
    start: Annotated[str, typer.Option(help="First decision day YYYY-MM-DD; earlier bars only warm up")],
    end: Annotated[str | None, typer.Option(help="Last day YYYY-MM-DD, inclusive")] = None,
    out: Annotated[Path, typer.Option(help="Where to write the metrics JSON")] = Path("metrics.json"),
    symbol: Annotated[
        list[str] | None,
        typer.Option(
            "--symbol", help="Symbol(s) of the data: default the file name, else the model's own symbol"
        ),
    ] = None,
) -> None:
    """Score a registered model on OHLCV data and write metrics JSON (accuracy, AUC, backtest, intervals)."""
    from hft.config import ConfigurationError, TransientError, get_settings
    from hft.ml.evaluate import evaluate as run_evaluate

    try:
        rep = run_evaluate(get_settings(), model, data, start, end, symbols=list(symbol) if symbol else None)
    except (ConfigurationError, TransientError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    out.write_text(json.dumps(rep, indent=2, default=float) + "\n")
    bt = rep["backtest"]
    typer.echo(
        f"n={rep['n']} accuracy={rep['accuracy']:.4f} {rep.get('accuracy_ci95')} auc={rep['roc_auc']:.4f} "
        f"base_rate={rep['base_rate']:.4f} trades={bt['trades']} net_pnl={bt['net_pnl_after_fees']:.2f}"
    )
    typer.echo(str(out))


def promote(
    model: Annotated[
        str | None, typer.Option("--model", help="Registered model name (settings.model_name)")
    ] = None,
) -> None:
    """Move alias champion to the challenger only if it wins on the latest walk-forward window after costs."""
    from hft.config import ConfigurationError, TransientError, get_settings
    from hft.ml.promote import promote as run_promote

    try:
        d = run_promote(get_settings(), model)
    except (ConfigurationError, TransientError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(json.dumps(d.as_dict(), indent=2, default=float))
    typer.echo(("promoted: " if d.promoted else "kept champion: ") + d.reason)


def register(app: typer.Typer) -> None:
    """Add the model commands to the ``hft`` CLI."""
    app.command("train")(train)
    app.command("evaluate")(evaluate)
    app.command("promote")(promote)
