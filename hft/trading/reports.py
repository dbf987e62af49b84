"""PnL reports: metrics from the stored fills, and a daily HTML page with an equity-curve image.

matplotlib is imported inside a function: it costs seconds at start-up (the dashboard imports
this module for :func:`current_marks`).
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from hft.trading import store
from hft.trading.pnl import EquityPoint, replay_fills, report


def current_marks(engine: Engine, symbols: list[str]) -> dict[str, float]:
    """Last trade price of each symbol that has one."""
    marks: dict[str, float] = {}
    with engine.connect() as conn:
        for s in symbols:
            t = store.last_trade(conn, s)
            if t is not None:
                marks[s] = t.price
    return marks


def pnl_report(
    engine: Engine, *, starting_cash: float, marks: Mapping[str, float], now: datetime
) -> dict[str, Any]:
    """Compute the book's metrics over all fills and store them as a ``pnl`` report."""
    with engine.begin() as conn:
        fills = store.load_fills(conn)
        metrics = report(fills, starting_cash=starting_cash, marks=marks, as_of=now)
        start = fills[0].time if fills else now
        store.insert_report(conn, "pnl", start, now, metrics, None)
    return metrics


def _equity_png(curve: list[EquityPoint], title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")  # no display on servers
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.2), dpi=100)
    try:
        if curve:
            ax.step(
                mdates.date2num([p.time for p in curve]),  # type: ignore[no-untyped-call]
                [p.equity for p in curve],
                where="post",
                color="#1f77b4",
            )
        else:
            ax.text(0.5, 0.5, "no fills", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(title)
        ax.set_ylabel("equity (quote)")
        ax.xaxis_date()
        ax.grid(alpha=0.3)
        fig.autofmt_xdate()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", bbox_inches="tight")
        return buf.getvalue()
    finally:
        plt.close(fig)


def daily_report(
    engine: Engine,
    *,
    day: datetime,
    starting_cash: float,
    marks: Mapping[str, float],
    out_dir: Path,
    now: datetime,
) -> tuple[dict[str, Any], Path]:
    """Write ``out_dir/daily-YYYY-MM-DD.html`` (+ its PNG) for the UTC day and store the metrics."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    end = start + timedelta(days=1)
    with engine.connect() as conn:
        all_fills = store.load_fills(conn, None, end)
    day_fills = [f for f in all_fills if f.time >= start]
    # The book carries positions across days: metrics are of the whole book as of the day's end,
    # with the day's own activity beside them.
    metrics: dict[str, Any] = dict(
        report(all_fills, starting_cash=starting_cash, marks=marks, as_of=min(end, now))
    )
    metrics.update(
        day=start.date().isoformat(),
        day_fills=len(day_fills),
        day_fees=sum(f.fill.fee for f in day_fills),
        day_turnover=sum(f.fill.notional for f in day_fills),
    )
    curve, _, _, _ = replay_fills(all_fills, starting_cash)
    label = start.date().isoformat()
    png = _equity_png([p for p in curve if p.time >= start] or curve[-1:], f"equity {label} (UTC)")
    out_dir.mkdir(parents=True, exist_ok=True)
    png_path = out_dir / f"daily-{label}.png"
    png_path.write_bytes(png)
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(f'{v:,.4f}' if isinstance(v, float) else str(v))}</td></tr>"
        for k, v in metrics.items()
    )
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>Paper trading {label}</title></head><body>"
        f"<h1>Paper trading report {label} (UTC)</h1>"
        f"<img alt='equity curve' src='data:image/png;base64,{base64.b64encode(png).decode()}'>"
        f"<table>{rows}</table><p>Fills that day: {len(day_fills)}. Generated {now.isoformat()}.</p>"
        "</body></html>"
    )
    html_path = out_dir / f"daily-{label}.html"
    html_path.write_text(page, encoding="utf-8")
    with engine.begin() as conn:
        store.insert_report(conn, "daily", start, end, metrics, str(html_path))
    return metrics, html_path
