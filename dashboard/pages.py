"""The five pages: layouts and their refresh callbacks (wiring only; numbers come from hft.reporting)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from dash import Dash, Input, Output, State, ctx, dash_table, dcc, html, no_update
from prometheus_client import Counter, Histogram

from hft.config import Settings
from hft.reporting import market, models, prometheus, quality, trading
from hft.reporting.book import Book

log = logging.getLogger(__name__)

RENDER_SECONDS = Histogram("hft_dashboard_render_seconds", "Time to build a page's data", ["page"])
RENDER_ERRORS = Counter(
    "hft_dashboard_errors_total", "Page refreshes that failed (shown as an error box)", ["page"]
)
KILL_SWITCH = Counter(
    "hft_dashboard_kill_switch_total", "Kill-switch presses by action and outcome", ["action", "outcome"]
)

Clock = Callable[[], datetime]

NAV = [
    ("/", "Trading"),
    ("/market", "Market"),
    ("/models", "Models"),
    ("/data-quality", "Data quality"),
    ("/system", "System"),
]

GRAPH_LAYOUT: dict[str, Any] = {
    "margin": {"l": 50, "r": 20, "t": 30, "b": 40},
    "height": 320,
    "paper_bgcolor": "white",
    "plot_bgcolor": "white",
    "legend": {"orientation": "h", "y": -0.2},
}


# ---- small view helpers ---------------------------------------------------------------------


def _num(x: Any, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{float(x):,.{digits}f}"


def _card(key: str, label: str, value: str, tone: str = "") -> html.Div:
    return html.Div(
        [html.Div(label, className="label"), html.Div(value, className=f"value {tone}")],
        className="card",
        id=f"kpi-{key}",
    )


def _tone(x: float) -> str:
    return "pos" if x > 0 else ("neg" if x < 0 else "")


def error_box(page: str, exc: BaseException) -> html.Div:
    """The visible form of a failed refresh (the test looks for none of these)."""
    return html.Div(
        [html.B(f"{page}: cannot load data. "), html.Span(f"{type(exc).__name__}: {exc}")],
        className="error-box",
    )


def _table(
    table_id: str, df: pd.DataFrame, page_size: int = 12, filters: bool = False
) -> dash_table.DataTable:
    return dash_table.DataTable(
        id=table_id,
        data=_records(df),
        columns=[{"name": c, "id": c} for c in df.columns],
        page_size=page_size,
        sort_action="native",
        filter_action="native" if filters else "none",
        style_table={"overflowX": "auto"},
        style_cell={"fontFamily": "inherit", "fontSize": 13, "padding": "4px"},
        style_header={"fontWeight": 600, "backgroundColor": "#f0f3f7"},
    )


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    out = df.copy()
    for col in out.columns:
        if pd.api.types.is_datetime64_any_dtype(out[col]):
            out[col] = out[col].dt.strftime("%Y-%m-%d %H:%M:%S.%f").str[:-3]
        elif pd.api.types.is_float_dtype(out[col]):
            out[col] = out[col].round(6)
    return out.astype(object).where(out.notna(), None).to_dict("records")


def _empty_figure(message: str) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(
        **GRAPH_LAYOUT,
        annotations=[
            {"text": message, "showarrow": False, "x": 0.5, "y": 0.5, "xref": "paper", "yref": "paper"}
        ],
    )
    return fig


def guarded(page: str, n_outputs: int, fn: Callable[..., tuple[Any, ...]]) -> Callable[..., tuple[Any, ...]]:
    """Time a page refresh; on failure show an error box (first output) and keep the rest."""

    def wrapper(*args: Any) -> tuple[Any, ...]:
        start = time.perf_counter()
        try:
            return ("", *fn(*args))
        except Exception as exc:  # any failure must reach the page, loudly, not kill the callback
            RENDER_ERRORS.labels(page).inc()
            log.exception("refreshing %s failed", page)
            return (error_box(page, exc), *([no_update] * (n_outputs - 1)))
        finally:
            RENDER_SECONDS.labels(page).observe(time.perf_counter() - start)

    return wrapper


def nav_bar(path: str) -> list[Any]:
    """The top bar's links, the current page highlighted."""
    return [
        html.Span("HFT MLOps", className="brand"),
        *[dcc.Link(label, href=href, className="active" if href == path else "") for href, label in NAV],
        html.Span(id="clock", className="clock"),
    ]


# ---- Trading ---------------------------------------------------------------------------------


def trading_layout(settings: Settings) -> html.Div:
    """Equity, PnL and risk numbers, positions, the kill switch, orders and fills with filters."""
    options = [{"label": s, "value": s} for s in settings.symbols]
    return html.Div(
        className="page",
        id="page-trading",
        children=[
            html.H2("Trading (paper)"),
            html.Div(id="trading-error"),
            html.Div(id="trading-cards", className="cards"),
            html.Div(
                className="row",
                children=[
                    html.Div(
                        className="panel",
                        children=[
                            html.H3("Equity curve"),
                            dcc.Graph(id="equity-graph"),
                            html.Div(id="equity-note", className="note"),
                        ],
                    ),
                    html.Div(
                        className="panel",
                        children=[
                            html.H3("Positions"),
                            html.Div(id="positions"),
                            html.H3("Bot"),
                            html.Div(id="bot-state"),
                            html.Div(
                                className="filters",
                                children=[
                                    dcc.ConfirmDialogProvider(
                                        html.Button("Halt bot (kill switch)", className="kill"),
                                        id="halt-confirm",
                                        message="Halt the trading bot now?",
                                    ),
                                    dcc.ConfirmDialogProvider(
                                        html.Button("Resume bot", className="resume"),
                                        id="resume-confirm",
                                        message="Resume trading?",
                                    ),
                                ],
                            ),
                            html.Div(id="kill-result", className="note"),
                        ],
                    ),
                ],
            ),
            html.Div(
                className="panel",
                children=[
                    html.H3("Orders and fills"),
                    html.Div(
                        className="filters",
                        children=[
                            dcc.Dropdown(
                                id="flt-symbol", options=options, placeholder="all symbols", clearable=True
                            ),
                            dcc.Dropdown(
                                id="flt-side",
                                options=[{"label": s, "value": s} for s in ("buy", "sell")],
                                placeholder="both sides",
                                clearable=True,
                            ),
                            dcc.Dropdown(
                                id="flt-status",
                                options=[{"label": s, "value": s} for s in ("filled", "rejected", "pending")],
                                placeholder="any status",
                                clearable=True,
                            ),
                        ],
                    ),
                    html.Div(id="history-error"),
                    html.H3("Orders"),
                    html.Div(id="orders"),
                    html.H3("Fills"),
                    html.Div(id="fills"),
                ],
            ),
        ],
    )


def _pct(x: float) -> str:
    """A fraction as a percentage that never rounds a real move to 0.00 %."""
    if x == 0:
        return "0.00 %"
    if abs(x) < 1e-4:
        return f"{100 * x:.2g} %"
    return f"{100 * x:.2f} %"


def _value_card(
    key: str, label: str, value: float | None, shown: str, tone: str = "", sub: str = ""
) -> html.Div:
    """A KPI card that carries its exact number in ``data-value`` (the tests compare it with SQL)."""
    children: list[Any] = [
        html.Div(label, className="label"),
        html.Div(
            shown, className=f"value {tone}", **{"data-value": "" if value is None else repr(float(value))}
        ),
    ]
    if sub:
        children.append(html.Div(sub, className="note"))
    return html.Div(children, className="card", id=f"kpi-{key}")


def trading_cards(b: Book) -> list[html.Div]:
    """The Trading page's tiles: every number from the one Book."""
    win = "—" if b.win_rate is None else f"{100 * b.win_rate:.1f} %"
    win_sub = (
        "no trade has closed yet" if b.win_rate is None else f"{b.wins} of {b.closed_trades} closed trades"
    )
    return [
        _value_card("equity", "Equity", b.equity, _num(b.equity)),
        _value_card(
            "net-pnl", "Net PnL", b.net_pnl, _num(b.net_pnl), _tone(b.net_pnl), "realised − fees + unrealised"
        ),
        _value_card("realized", "Realised PnL", b.realized_pnl, _num(b.realized_pnl), _tone(b.realized_pnl)),
        _value_card(
            "unrealized", "Unrealised PnL", b.unrealized_pnl, _num(b.unrealized_pnl), _tone(b.unrealized_pnl)
        ),
        _value_card("fees", "Fees paid", b.fees_paid, _num(b.fees_paid)),
        _value_card("win-rate", "Win rate", b.win_rate, win, "", win_sub),
        _value_card(
            "sharpe",
            "Sharpe (ann.)",
            b.sharpe,
            _num(b.sharpe),
            "",
            "" if b.sharpe is not None else "needs a day of equity",
        ),
        _value_card(
            "drawdown",
            "Max drawdown",
            b.max_drawdown,
            _pct(b.max_drawdown),
            "neg" if b.max_drawdown > 0 else "",
            f"{_num(b.max_drawdown_quote)} below the peak",
        ),
        _value_card("fills", "Fills", b.fills, str(b.fills)),
        _value_card("turnover", "Turnover", b.turnover, _num(b.turnover, 0)),
    ]


def equity_figure(b: Book) -> go.Figure:
    """The equity curve of the Book (its last point is the Equity tile)."""
    if b.curve.empty:
        return _empty_figure("no fills yet")
    fig = go.Figure(
        go.Scatter(
            x=b.curve["time"], y=b.curve["equity"], mode="lines", name="equity", line={"color": "#1f6fb2"}
        )
    )
    fig.add_hline(
        y=b.starting_cash,
        line={"dash": "dot", "color": "#8a96a3", "width": 1},
        annotation_text="starting cash",
        annotation_position="bottom right",
    )
    fig.update_layout(**GRAPH_LAYOUT, yaxis_title="equity (quote)", yaxis_tickformat=",.2f", showlegend=False)
    return fig


def equity_note(b: Book) -> str:
    """How the curve and the tiles were valued, so a moving net PnL does not look like a bug."""
    if b.as_of is None:
        return "no fills yet: equity is the starting cash"
    marks = ", ".join(f"{m.symbol} {m.price:,.2f}" for m in sorted(b.marks.values(), key=lambda m: m.symbol))
    step = f"every {b.step.total_seconds():g} s" if b.step else "at the fill"
    return (
        f"Equity marked to market {step} from the first fill to {b.as_of:%Y-%m-%d %H:%M:%S} UTC (market time, the "
        f"newest trade): {marks}. The last point is the Equity tile. Net PnL = realised − fees + unrealised; "
        "the unrealised part follows these marks, so it moves between fills."
    )


def _trading_refresh(settings: Settings) -> Callable[..., tuple[Any, ...]]:
    from hft.storage.db import engine

    def refresh(_n: int | None) -> tuple[Any, ...]:
        view = trading.trading_overview(engine(settings), settings)
        badge = {"active": "ok", "reducing": "warn", "halted": "bad"}.get(view.bot_state, "warn")
        bot = html.Span(
            [
                html.Span(view.bot_state.upper(), className=f"badge {badge}", id="bot-state-badge"),
                html.Span(f"  {view.bot_reason}", className="note"),
            ]
        )
        positions = _table("positions-table", view.positions.round(6))
        b = view.book
        return trading_cards(b), equity_figure(b), equity_note(b), positions, bot

    return refresh


def _history_refresh(settings: Settings) -> Callable[..., tuple[Any, ...]]:
    from hft.storage.db import engine

    def refresh(_n: int | None, symbol: str | None, side: str | None, status: str | None) -> tuple[Any, ...]:
        eng = engine(settings)
        orders = trading.load_orders(eng, symbol, side, status)
        fills = trading.load_fills(eng, symbol, side, limit=500)
        fills = fills.drop(columns=["intent_id", "order_id"])
        return _table("orders-table", orders, filters=True), _table("fills-table", fills, filters=True)

    return refresh


def register_trading(app: Dash, settings: Settings, clock: Clock) -> None:
    """Callbacks of the Trading page."""
    app.callback(
        Output("trading-error", "children"),
        Output("trading-cards", "children"),
        Output("equity-graph", "figure"),
        Output("equity-note", "children"),
        Output("positions", "children"),
        Output("bot-state", "children"),
        Input("tick", "n_intervals"),
    )(guarded("trading", 6, _trading_refresh(settings)))
    app.callback(
        Output("history-error", "children"),
        Output("orders", "children"),
        Output("fills", "children"),
        Input("tick", "n_intervals"),
        Input("flt-symbol", "value"),
        Input("flt-side", "value"),
        Input("flt-status", "value"),
    )(guarded("history", 3, _history_refresh(settings)))

    @app.callback(
        Output("kill-result", "children"),
        Input("halt-confirm", "submit_n_clicks"),
        Input("resume-confirm", "submit_n_clicks"),
        prevent_initial_call=True,
    )
    def kill(_halt: int | None, _resume: int | None) -> str:
        halt = ctx.triggered_id == "halt-confirm"
        action = "halt" if halt else "resume"
        try:
            body = trading.kill_switch(settings, halt=halt)
        except Exception as exc:  # shown to the operator who pressed the button
            KILL_SWITCH.labels(action, "error").inc()
            log.exception("kill switch %s failed", action)
            return f"{action} failed: {exc}"
        KILL_SWITCH.labels(action, "ok").inc()
        return f"{action}: {body}"


# ---- Market ----------------------------------------------------------------------------------


def market_layout(settings: Settings) -> html.Div:
    """Price per symbol with the bot's signals and fills overlaid; the latest features."""
    return html.Div(
        className="page",
        id="page-market",
        children=[
            html.H2("Market"),
            html.Div(
                className="filters",
                children=[
                    dcc.Dropdown(
                        id="mkt-symbol",
                        options=[{"label": s, "value": s} for s in settings.symbols],
                        value=settings.symbols[0] if settings.symbols else None,
                        clearable=False,
                    ),
                ],
            ),
            html.Div(id="market-error"),
            html.Div(
                className="panel",
                children=[
                    html.H3("Price, signals and fills"),
                    dcc.Graph(id="price-graph"),
                    html.Div(id="price-note", className="note"),
                ],
            ),
            html.Div(
                className="panel",
                children=[
                    html.H3("Latest features"),
                    html.Div(id="features-note", className="note"),
                    html.Div(id="features"),
                ],
            ),
        ],
    )


def features_view(settings: Settings, row: market.FeatureRow) -> tuple[str, pd.DataFrame]:
    """The caption and table of the latest feature row: which features the model reads, what is absent and why."""
    from hft.config import TransientError
    from hft.features.spec import get_spec

    columns = ["feature", "value", "model reads it", "note"]
    if row.feature_time is None:
        return "no feature rows yet", pd.DataFrame(columns=columns)
    try:
        served = models.model_features(settings)
    except TransientError as exc:  # MLflow down: the features are still worth showing
        served, why = None, f"the model's feature set is unknown ({exc})"
    else:
        why = "no registered model yet"
    used = set(get_spec(served.feature_version).names) if served else set()
    present = [n for n, v in row.values.items() if v is not None]
    caption = (
        f"{len(row.values)} features stored for the bar closing {row.feature_time:%Y-%m-%d %H:%M:%S} UTC "
        f"({row.version}; {len(present)} present, {len(row.values) - len(present)} absent). "
    )
    if served:
        caption += (
            f"The {served.alias} (v{served.version}) reads {len(used)} of them ({served.feature_version}); "
            "the others are stored for models trained on bars built from trades."
        )
    else:
        caption += why + "."
    df = pd.DataFrame(
        [
            {
                "feature": n,
                "value": "absent" if v is None else round(v, 6),
                "model reads it": ("yes" if n in used else "no") if served else "?",
                "note": row.absent.get(n, ""),
            }
            for n, v in row.values.items()
        ],
        columns=columns,
    )
    return caption, df


def _market_refresh(settings: Settings) -> Callable[..., tuple[Any, ...]]:
    from hft.storage.db import engine

    def refresh(_n: int | None, symbol: str | None) -> tuple[Any, ...]:
        eng = engine(settings)
        symbol = symbol or (settings.symbols[0] if settings.symbols else "")
        ticks = market.price_ticks(eng, symbol)
        fig = go.Figure()
        if not ticks.empty:
            step = max(1, len(ticks) // 2500)  # enough points for the eye, light for the browser
            shown = ticks.iloc[::step]
            fig.add_trace(
                go.Scatter(
                    x=shown["trade_time"],
                    y=shown["price"],
                    mode="lines",
                    name="trades",
                    line={"color": "#5b6b7c", "width": 1},
                )
            )
            since = ticks["trade_time"].iloc[0]
            source = f"{len(ticks):,} trades of the last 30 minutes of data"
        else:
            bars = market.price_bars(eng, symbol)
            since = bars["open_time"].iloc[0] if not bars.empty else None
            if not bars.empty:
                fig.add_trace(
                    go.Candlestick(
                        x=bars["open_time"],
                        open=bars["open"],
                        high=bars["high"],
                        low=bars["low"],
                        close=bars["close"],
                        name=str(bars["interval"].iloc[0]),
                    )
                )
            source = f"{len(bars)} bars"
        sig = market.signals(eng, symbol, since)
        for side, color, sym in (("buy", "#11804a", "triangle-up"), ("sell", "#c0392b", "triangle-down")):
            s = sig[sig["side"] == side]
            if not s.empty:
                fig.add_trace(
                    go.Scatter(
                        x=s["decided_at"],
                        y=s["ref_price"],
                        mode="markers",
                        name=f"{side} signal",
                        marker={"symbol": sym, "size": 11, "color": color},
                        text=[f"p(up)={p:.3f}" for p in s["prob_up"]],
                    )
                )
        fl = market.fills(eng, symbol, since)
        if not fl.empty:
            fig.add_trace(
                go.Scatter(
                    x=fl["fill_time"],
                    y=fl["price"],
                    mode="markers",
                    name="fills",
                    marker={"symbol": "x", "size": 8, "color": "#1f6fb2"},
                )
            )
        if not fig.data:
            fig = _empty_figure(f"no market data for {symbol} yet")
        fig.update_layout(
            **{**GRAPH_LAYOUT, "height": 420}, xaxis_rangeslider_visible=False, yaxis_title="price"
        )
        note = f"{symbol}: {source}, {len(sig)} signals, {len(fl)} fills"
        fnote, fdf = features_view(settings, market.latest_features(eng, symbol))
        return fig, note, fnote, _table("features-table", fdf, page_size=40)

    return refresh


def register_market(app: Dash, settings: Settings) -> None:
    """Callbacks of the Market page."""
    app.callback(
        Output("market-error", "children"),
        Output("price-graph", "figure"),
        Output("price-note", "children"),
        Output("features-note", "children"),
        Output("features", "children"),
        Input("tick", "n_intervals"),
        Input("mkt-symbol", "value"),
    )(guarded("market", 5, _market_refresh(settings)))


# ---- Models ----------------------------------------------------------------------------------


def models_layout(settings: Settings) -> html.Div:
    """Champion and challenger with their metrics, last retrain and promotion, links into MLflow."""
    return html.Div(
        className="page",
        id="page-models",
        children=[
            html.H2("Models"),
            html.Div(id="models-error"),
            html.Div(id="models-cards", className="cards"),
            html.Div(
                className="panel",
                children=[
                    html.H3("Walk-forward metrics and baselines"),
                    html.Div(id="models-wf-note", className="note"),
                    html.Div(id="models-metrics"),
                ],
            ),
            html.Div(
                className="panel",
                children=[
                    html.H3("Promotion gate: champion vs challenger"),
                    html.Div(id="models-gate-note", className="note"),
                    html.Div(id="models-gate"),
                ],
            ),
            html.Div(
                className="panel",
                children=[
                    html.H3("Live record: champion and challenger on the same closed bars"),
                    html.Div(id="models-live-note", className="note"),
                    html.Div(id="models-live"),
                ],
            ),
            html.Div(
                className="panel",
                children=[html.H3("Latest registered versions"), html.Div(id="models-versions")],
            ),
        ],
    )


LIVE_COLUMNS = [
    "version",
    "role",
    "bars",
    "accuracy",
    "roc_auc",
    "base_rate",
    "trades",
    "gross_edge_bps",
    "net_pnl",
    "since",
]


def live_record(settings: Settings, view: Any) -> tuple[str, pd.DataFrame]:
    """The shadow record of the champion and the challenger (``hft.trading.shadow``), judged on the
    bars both scored while both existed; the champion alone when there is no challenger."""
    from hft.storage.db import engine
    from hft.trading import shadow

    champ, chal = view.versions.get("champion"), view.versions.get("challenger")
    empty = pd.DataFrame(columns=LIVE_COLUMNS)
    if champ is None and chal is None:
        return "no registered model yet", empty
    with engine(settings).connect() as conn:
        if chal is not None and (champ is None or chal.version != champ.version):
            live = shadow.compare(conn, settings, str(chal.version), str(champ.version) if champ else None)
            rows = [live[r] for r in ("champion", "challenger") if r in live]
            note = (
                f"challenger v{chal.version} beside champion v{champ.version if champ else '-'}: every closed "
                "bar scored by both, judged by the next bar's close; one-bar paper trades where the bot would "
                f"trade, {settings.taker_fee_bps + settings.slippage_bps:g} bps a side. Promotion waits for "
                f"{settings.shadow_min_decisions} such bars (HFT_SHADOW_MIN_DECISIONS; 0: walk-forward alone)."
            )
        else:
            rows = [
                r for r in shadow.summary(conn, settings) if champ and r.model_version == str(champ.version)
            ]
            note = "no challenger: the champion's own live record (every closed bar the API scored)"
    if not rows:
        return note.rstrip(".") + ". No judged bar yet: the API writes the record as bars close.", empty
    frame = pd.DataFrame(
        [
            {
                "version": r.model_version,
                "role": r.role,
                "bars": r.decisions,
                "accuracy": round(r.accuracy, 4),
                "roc_auc": round(r.roc_auc, 4),
                "base_rate": round(r.base_rate, 4),
                "trades": r.trades,
                "gross_edge_bps": round(r.gross_edge_bps, 2),
                "net_pnl": round(r.net_pnl, 2),
                "since": f"{r.since:%Y-%m-%d %H:%M}" if r.since else "-",
            }
            for r in rows
        ],
        columns=LIVE_COLUMNS,
    )
    return note, frame


def _models_refresh(settings: Settings) -> Callable[..., tuple[Any, ...]]:
    def refresh(_n: int | None) -> tuple[Any, ...]:
        view = models.models_view(settings)
        cards = []
        for alias in models.ALIASES:
            v = view.versions.get(alias)
            if v is None:
                cards.append(_card(alias, alias, "none"))
                continue
            cards.append(
                html.Div(
                    className="card",
                    id=f"kpi-{alias}",
                    children=[
                        html.Div(alias, className="label"),
                        html.Div(f"{view.name} v{v.version}", className="value"),
                        html.Div(
                            [
                                html.A("version", href=v.version_url, target="_blank"),
                                " · ",
                                html.A("run", href=v.run_url, target="_blank"),
                            ],
                            className="note",
                        ),
                        html.Div(f"registered {v.created:%Y-%m-%d %H:%M} UTC", className="note"),
                    ],
                )
            )
        cards.append(
            _card(
                "last-retrain",
                "Last retrain",
                f"{view.last_retrain:%Y-%m-%d %H:%M}" if view.last_retrain else "never",
            )
        )
        cards.append(
            _card(
                "last-promotion",
                "Last promotion",
                f"{view.last_promotion:%Y-%m-%d %H:%M}" if view.last_promotion else "never",
            )
        )
        cards.append(
            html.Div(
                className="card",
                children=[
                    html.Div("MLflow", className="label"),
                    html.A("open the registry", href=view.registry_url, target="_blank", id="mlflow-link"),
                ],
            )
        )
        shown = view.versions.get("champion") or view.versions.get("challenger")
        wf = pd.DataFrame(
            models.walk_forward_table(shown) if shown else [], columns=["model", "kind", *models.WF_COLUMNS]
        )
        wf_note, gate_note = models.pnl_notes(shown) if shown else ("no registered model yet: hft train", "")
        gate = pd.DataFrame(models.metric_table(view), columns=["metric", *models.ALIASES])
        gate = gate.apply(lambda col: col.map(lambda v: round(v, 4) if isinstance(v, float) else v))
        vdf = pd.DataFrame(view.latest, columns=["version", "created", "aliases", "run_id"])
        live_note, live = live_record(settings, view)
        return (
            cards,
            wf_note,
            _table("models-metrics-table", wf.round(4), page_size=20),
            gate_note,
            _table("models-gate-table", gate, page_size=20),
            live_note,
            _table("models-live-table", live),
            _table("models-versions-table", vdf),
        )

    return refresh


def register_models(app: Dash, settings: Settings) -> None:
    """Callbacks of the Models page."""
    app.callback(
        Output("models-error", "children"),
        Output("models-cards", "children"),
        Output("models-wf-note", "children"),
        Output("models-metrics", "children"),
        Output("models-gate-note", "children"),
        Output("models-gate", "children"),
        Output("models-live-note", "children"),
        Output("models-live", "children"),
        Output("models-versions", "children"),
        Input("tick", "n_intervals"),
    )(guarded("models", 9, _models_refresh(settings)))


# ---- Data quality ----------------------------------------------------------------------------


def quality_layout(settings: Settings) -> html.Div:
    """The latest validation result of each suite and the data docs link."""
    return html.Div(
        className="page",
        id="page-quality",
        children=[
            html.H2("Data quality"),
            html.Div(id="quality-error"),
            html.Div(id="quality-cards", className="cards"),
            html.Div(
                className="panel",
                children=[html.H3("Latest validation per suite"), html.Div(id="quality-table")],
            ),
        ],
    )


def _quality_refresh(settings: Settings) -> Callable[..., tuple[Any, ...]]:
    def refresh(_n: int | None) -> tuple[Any, ...]:
        results = quality.latest_results(settings)
        docs = quality.data_docs_index(settings)
        passed = sum(r.success for r in results)
        cards = [
            _card("suites", "Kinds validated", str(len(results))),
            _card(
                "suites-passed",
                "Passing",
                f"{passed}/{len(results)}",
                "pos" if passed == len(results) else "neg",
            ),
            html.Div(
                className="card",
                children=[
                    html.Div("Great Expectations", className="label"),
                    html.A(
                        "open the data docs",
                        href="/data-docs/index.html",
                        target="_blank",
                        id="data-docs-link",
                    )
                    if docs
                    else html.Span("no data docs built yet", className="note"),
                ],
            ),
        ]
        rows = []
        for r in results:
            rows.append(
                html.Tr(
                    [
                        html.Td(r.kind),
                        html.Td(
                            html.Span(
                                "pass" if r.success else "FAIL",
                                className=f"badge {'ok' if r.success else 'bad'}",
                            )
                        ),
                        html.Td(f"{r.passed}/{r.checks}"),
                        html.Td(f"{r.rows:,}"),
                        html.Td(
                            f"{r.start:%Y-%m-%d %H:%M} → {r.end:%Y-%m-%d %H:%M}" if r.start and r.end else ""
                        ),
                        html.Td(f"{r.finished_at:%Y-%m-%d %H:%M:%S}" if r.finished_at else ""),
                        html.Td("; ".join(r.failed) or "-"),
                        html.Td("; ".join(r.warnings) or "-"),
                        html.Td(
                            html.A("results", href=f"/data-docs/{r.pages[0]}", target="_blank")
                            if r.pages
                            else ""
                        ),
                    ],
                    className="dq-row",
                )
            )
        head = html.Tr(
            [
                html.Th(h)
                for h in (
                    "data",
                    "result",
                    "checks passed",
                    "rows",
                    "partition",
                    "validated at",
                    "failed checks",
                    "warnings",
                    "data docs",
                )
            ]
        )
        table = (
            html.Table([html.Thead(head), html.Tbody(rows)], className="simple", id="quality-results")
            if rows
            else html.Div(
                "no validation has run yet (the validate_market_data DAG or hft validate)",
                className="note",
                id="quality-results",
            )
        )
        return cards, table

    return refresh


def register_quality(app: Dash, settings: Settings) -> None:
    """Callbacks of the Data quality page."""
    app.callback(
        Output("quality-error", "children"),
        Output("quality-cards", "children"),
        Output("quality-table", "children"),
        Input("tick", "n_intervals"),
    )(guarded("quality", 3, _quality_refresh(settings)))


# ---- System ----------------------------------------------------------------------------------


def system_layout(settings: Settings) -> html.Div:
    """Tick-to-signal latency, throughput, lag, errors and service health from Prometheus."""
    return html.Div(
        className="page",
        id="page-system",
        children=[
            html.H2("System"),
            dcc.RadioItems(
                id="sys-window",
                options=[{"label": f" last {m} min ", "value": m} for m in (15, 60, 360)],
                value=15,
                inline=True,
            ),
            html.Div(id="system-error"),
            html.Div(
                className="panel",
                children=[html.H3("Service health (Prometheus targets)"), html.Div(id="sys-targets")],
            ),
            html.Div(
                className="panel",
                children=[html.H3("Load while measured"), html.Div(id="sys-load-box")],
            ),
            html.Div(id="sys-graphs", className="row"),
            html.Div(id="sys-missing", className="note"),
        ],
    )


def panel_figure(panel: prometheus.Panel, series: list[prometheus.Series]) -> go.Figure:
    """One System chart, its y axis scaled to the finite values it holds (NaN = no observations: a gap)."""
    fig = go.Figure()
    for s in series:
        label = (
            ", ".join(f"{k}={v}" for k, v in s.labels.items() if k not in ("__name__", "instance"))
            or panel.key
        )
        ys = [v if math.isfinite(v) else None for v in s.values]
        if not any(y is not None for y in ys):
            continue
        sparse = sum(y is not None for y in ys) < 20  # a few points: draw them, a line alone may not show
        fig.add_trace(go.Scatter(x=s.times, y=ys, mode="lines+markers" if sparse else "lines", name=label))
    if not fig.data:
        fig = _empty_figure("no samples in this window yet")
    fig.update_layout(
        **{**GRAPH_LAYOUT, "height": 260, "margin": {"l": 60, "r": 20, "t": 36, "b": 40}},
        title={"text": f"{panel.title} ({panel.unit})", "font": {"size": 13}},
    )
    rng = prometheus.y_range(series)
    if rng is not None:
        fig.update_yaxes(range=list(rng), autorange=False, title_text=panel.unit, nticks=6)
    return fig


def load_note(load: prometheus.Load | None, minutes: int) -> html.Div:
    """Under what load the latencies were measured (the benchmark table's figures had their own)."""
    import os

    if load is None or load.counter is None:
        return html.Div(
            "Load unknown: no process reports a tick counter yet.", className="note", id="sys-load"
        )

    def rate(x: float | None) -> str:
        return "-" if x is None else f"{x:,.1f}"

    cards = [
        _value_card("load-avg", "Ticks/s (average)", load.avg_ticks_per_s, rate(load.avg_ticks_per_s)),
        _value_card("load-peak", "Ticks/s (peak, 1 min)", load.peak_ticks_per_s, rate(load.peak_ticks_per_s)),
        _value_card(
            "load-cpu",
            "CPU of the processes",
            load.cpu_cores,
            "-" if load.cpu_cores is None else f"{load.cpu_cores:.2f} of {os.cpu_count()} cores",
        ),
    ]
    names = {"tick_to_signal": "tick→signal", "tick_to_feature": "tick→feature", "api": "API request"}
    samples = ", ".join(f"{n:,.0f} {names.get(k, k)}" for k, n in load.samples.items())
    text = (
        f"The latencies below were measured over the last {minutes} min at {rate(load.avg_ticks_per_s)} ticks/s on "
        f"average (peak {rate(load.peak_ticks_per_s)}/s, from {load.counter})"
        + (f", from {samples} observations" if samples else "")
        + ". The README's benchmark table was measured at 1,000 and 5,000 ticks/s offered on an otherwise idle "
        "machine: compare a latency here only with one measured under the same load."
    )
    return html.Div([html.Div(cards, className="cards"), html.Div(text, className="note")], id="sys-load")


def _system_refresh(settings: Settings, clock: Clock) -> Callable[..., tuple[Any, ...]]:
    def refresh(_n: int | None, minutes: int | None) -> tuple[Any, ...]:
        client = prometheus.PrometheusClient(prometheus.prometheus_url(settings))
        end = clock()
        start = end - timedelta(minutes=minutes or 15)
        view = prometheus.system_view(client, start, end, step_s=max(5.0, (minutes or 15) * 60 / 240))
        up = sum(t.health == "up" for t in view.targets)
        tdf = pd.DataFrame(
            [
                {
                    "job": t.job,
                    "health": t.health,
                    "url": t.url,
                    "last scrape": t.last_scrape[:19],
                    "last error": t.last_error,
                }
                for t in view.targets
            ],
            columns=["job", "health", "url", "last scrape", "last error"],
        )
        targets = html.Div(
            [
                html.Div(
                    className="cards",
                    children=[
                        _card(
                            "targets-up",
                            "Targets up",
                            f"{up}/{len(view.targets)}",
                            "pos" if up == len(view.targets) else "neg",
                        )
                    ],
                ),
                _table("sys-targets-table", tdf, page_size=20),
            ]
        )
        graphs = []
        for panel in prometheus.PANELS:
            series = view.series.get(panel.key)
            if series is None:
                continue
            graphs.append(
                html.Div(
                    dcc.Graph(
                        id=f"sys-graph-{panel.key}",
                        figure=panel_figure(panel, series),
                        config={"displayModeBar": False},  # it covered the chart's title
                    ),
                    className="panel",
                )
            )
        missing = ("Not reported by any process yet: " + ", ".join(view.missing)) if view.missing else ""
        return targets, load_note(view.load, minutes or 15), graphs, missing

    return refresh


def register_system(app: Dash, settings: Settings, clock: Clock) -> None:
    """Callbacks of the System page."""
    app.callback(
        Output("system-error", "children"),
        Output("sys-targets", "children"),
        Output("sys-load-box", "children"),
        Output("sys-graphs", "children"),
        Output("sys-missing", "children"),
        Input("tick", "n_intervals"),
        Input("sys-window", "value"),
    )(guarded("system", 5, _system_refresh(settings, clock)))


PAGES: dict[str, Callable[[Settings], html.Div]] = {
    "/": trading_layout,
    "/market": market_layout,
    "/models": models_layout,
    "/data-quality": quality_layout,
    "/system": system_layout,
}


def register_all(app: Dash, settings: Settings, clock: Clock) -> None:
    """Every page's callbacks plus the router and the clock."""
    register_trading(app, settings, clock)
    register_market(app, settings)
    register_models(app, settings)
    register_quality(app, settings)
    register_system(app, settings, clock)

    @app.callback(Output("page", "children"), Output("nav", "children"), Input("url", "pathname"))
    def route(path: str | None) -> tuple[Any, Any]:
        layout = PAGES.get(path or "/")
        if layout is None:
            return html.Div(
                className="page", children=[html.H2("Not found"), dcc.Link("Trading", href="/")]
            ), nav_bar(path or "")
        return layout(settings), nav_bar(path or "/")

    @app.callback(Output("clock", "children"), Input("tick", "n_intervals"), State("url", "pathname"))
    def show_clock(_n: int | None, _path: str | None) -> str:
        return f"{clock():%Y-%m-%d %H:%M:%S} UTC"
