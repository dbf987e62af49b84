"""Out-of-sample metrics: classification scores with bootstrap intervals, calibration, and a
cost-aware backtest of confident signals only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from hft.trading.strategy import Signal, signal_from_prob, simulate_book

_EPS = 1e-6


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """ROC-AUC by ranks (ties averaged); NaN when only one class is present."""
    y = np.asarray(y, dtype=np.float64)
    n_pos = float(y.sum())
    n_neg = float(len(y) - n_pos)
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = pd.Series(p).rank(method="average").to_numpy()
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def classification(y: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Accuracy, balanced accuracy, ROC-AUC, log-loss, Brier and the majority-class share."""
    y = np.asarray(y, dtype=np.float64)
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    pred = (p >= threshold).astype(np.float64)
    pos = y == 1
    tpr = float((pred[pos] == 1).mean()) if pos.any() else float("nan")
    tnr = float((pred[~pos] == 0).mean()) if (~pos).any() else float("nan")
    up = float(y.mean()) if len(y) else float("nan")
    return {
        "n": float(len(y)),
        "accuracy": float((pred == y).mean()),
        "balanced_accuracy": float(np.nanmean([tpr, tnr])),
        "roc_auc": roc_auc(y, p),
        "log_loss": float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))),
        "brier": float(np.mean((p - y) ** 2)),
        "base_rate": max(up, 1 - up),
        "up_rate": up,
    }


def bootstrap_ci(
    y: np.ndarray, p: np.ndarray, n_boot: int = 200, block: int = 96, seed: int = 0, threshold: float = 0.5
) -> dict[str, list[float]]:
    """95% intervals of accuracy and ROC-AUC by a moving-block bootstrap (blocks keep autocorrelation)."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    n = len(y)
    if n < 2 * block:
        block = max(1, n // 10)
    rng = np.random.default_rng(seed)
    n_blocks = int(np.ceil(n / block))
    accs, aucs = [], []
    correct = ((p >= threshold) == (y == 1)).astype(np.float64)
    for _ in range(n_boot):
        starts = rng.integers(0, n - block + 1, size=n_blocks)
        idx = (starts[:, None] + np.arange(block)[None, :]).ravel()[:n]
        accs.append(correct[idx].mean())
        aucs.append(roc_auc(y[idx], p[idx]))
    return {
        "accuracy_ci95": [float(np.nanpercentile(accs, 2.5)), float(np.nanpercentile(accs, 97.5))],
        "roc_auc_ci95": [float(np.nanpercentile(aucs, 2.5)), float(np.nanpercentile(aucs, 97.5))],
    }


def calibration_curve(y: np.ndarray, p: np.ndarray, bins: int = 10) -> dict[str, list[float]]:
    """Mean predicted probability vs observed frequency per quantile bin."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    edges = np.unique(np.quantile(p, np.linspace(0, 1, bins + 1)))
    which = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, max(len(edges) - 2, 0))
    mean_p, freq, count = [], [], []
    for b in range(max(len(edges) - 1, 1)):
        m = which == b
        if m.any():
            mean_p.append(float(p[m].mean()))
            freq.append(float(y[m].mean()))
            count.append(int(m.sum()))
    return {"mean_predicted": mean_p, "observed": freq, "count": [float(c) for c in count]}


@dataclass(frozen=True)
class Costs:
    """Per-side costs in basis points and the thresholds of a confident signal."""

    fee_bps: float
    slippage_bps: float
    buy_threshold: float
    sell_threshold: float
    notional: float = 1000.0
    edge_filter: bool = True  # trade only when the expected edge beats the round trip (needs moves)

    @property
    def round_trip_bps(self) -> float:
        """Fees and slippage paid to open and close one position."""
        return 2 * (self.fee_bps + self.slippage_bps)

    @classmethod
    def from_settings(cls, settings: Any) -> Costs:
        """Taker fees (the bot sends market orders), slippage, thresholds and notional from settings."""
        return cls(
            fee_bps=float(settings.taker_fee_bps),
            slippage_bps=float(settings.slippage_bps),
            buy_threshold=float(settings.buy_threshold),
            sell_threshold=float(settings.sell_threshold),
            notional=float(settings.order_notional),
        )


_SIDE = {Signal.BUY: 1.0, Signal.SELL: -1.0, Signal.HOLD: 0.0}


def trade_sides(p: np.ndarray, costs: Costs, move_bps: np.ndarray | None = None) -> np.ndarray:
    """+1 long, -1 short, 0 none per decision, by :func:`hft.trading.strategy.signal_from_prob`.

    The bot's own rule, called once per decision (so the backtest can never drift from what the
    bot does); with ``move_bps`` and ``costs.edge_filter`` a trade also needs an expected edge
    above the round trip.
    """
    use_moves = move_bps is not None and costs.edge_filter
    out = np.zeros(len(p))
    for i, prob in enumerate(np.asarray(p, dtype=np.float64).tolist()):
        sig = signal_from_prob(
            prob,
            costs.buy_threshold,
            costs.sell_threshold,
            move_bps=float(move_bps[i]) if use_moves and move_bps is not None else None,
            cost_bps=costs.round_trip_bps,
        )
        out[i] = _SIDE[sig]
    return out


def non_overlapping(
    side: np.ndarray, times: np.ndarray, hold_ns: int, groups: np.ndarray | None
) -> np.ndarray:
    """Keep a signal only if its group (symbol) holds no position: one opened at t closes at t + hold_ns.

    ``times`` sorted ascending; returns a copy of ``side`` with the skipped signals set to 0.
    """
    out = np.zeros_like(side)
    free: dict[Any, int] = {}
    keys = groups.tolist() if groups is not None else [None] * len(side)
    for i in np.flatnonzero(side != 0).tolist():
        g, ti = keys[i], int(times[i])
        if ti >= free.get(g, -(2**62)):
            out[i] = side[i]
            free[g] = ti + hold_ns
    return out


def _infer_bar_ns(t: np.ndarray) -> int:
    """The bar of sorted decision times: their smallest positive spacing (1 when there is none)."""
    d = np.diff(np.unique(np.asarray(t, dtype=np.int64)))
    d = d[d > 0]
    return int(d.min()) if len(d) else 1


def _summary(gross_bps: np.ndarray, when: np.ndarray, costs: Costs) -> dict[str, Any]:
    """PnL, edge, hit rate, Sharpe (daily PnL x sqrt(365)) and max drawdown of trades realised at ``when``."""
    net_bps = gross_bps - costs.round_trip_bps
    pnl = net_bps / 1e4 * costs.notional
    equity = np.cumsum(pnl)
    peak = np.maximum.accumulate(np.concatenate([[0.0], equity]))[1:] if len(equity) else equity
    max_dd = float((peak - equity).max()) if len(equity) else 0.0
    sharpe = 0.0
    if len(pnl) > 1:
        days = pd.Series(pnl, index=pd.to_datetime(when, unit="ns", utc=True)).resample("1D").sum()
        if days.std() > 0:
            sharpe = float(days.mean() / days.std() * np.sqrt(365))
    return {
        "trades": len(gross_bps),
        "net_pnl_after_fees": float(pnl.sum()),
        "gross_pnl": float((gross_bps / 1e4 * costs.notional).sum()),
        "avg_gross_edge_bps": float(gross_bps.mean()) if len(gross_bps) else 0.0,
        "avg_net_bps": float(net_bps.mean()) if len(net_bps) else 0.0,
        "hit_rate": float((gross_bps > 0).mean()) if len(gross_bps) else 0.0,
        "sharpe": sharpe,
        "max_drawdown": max_dd,
        "equity_times": np.asarray(when).tolist(),
        "equity": equity.tolist(),
        "pnl": pnl,
    }


_LONG_SHORT_KEYS = (
    "trades",
    "long_trades",
    "short_trades",
    "net_pnl_after_fees",
    "gross_pnl",
    "avg_gross_edge_bps",
    "hit_rate",
)


def backtest(
    p: np.ndarray,
    fwd_ret: np.ndarray,
    times: np.ndarray,
    costs: Costs,
    move_bps: np.ndarray | None = None,
    hold_ns: int = 0,
    groups: np.ndarray | None = None,
    bar_ns: int | None = None,
) -> dict[str, Any]:
    """Trade the bot's book (issue 23): the signals of :func:`trade_sides` (the bot's rule) through
    :func:`hft.trading.strategy.simulate_book` (the bot's trade lifecycle), per ``groups`` value (symbol).

    Long-only spot, one position per symbol: flat and a buy signal opens ``costs.notional``; it
    closes after ``hold_ns`` (the model's horizon, in bars of ``bar_ns``: inferred from the
    decision times when not given; ``hold_ns`` 0 means one bar); sell signals open nothing. The
    trade's return is ``fwd_ret`` of its entry decision, which must be the return of a position
    opened at that close and closed at the horizon's close (:attr:`hft.ml.dataset.Dataset.exit_ret`);
    a decision without one (NaN: the end of the data) opens nothing. Without ``move_bps`` (or with
    ``costs.edge_filter`` off) a signal is the thresholds alone; with it, it also needs an expected
    edge ((2p - 1) x expected move) above the round trip. Every trade pays the round trip. PnL is
    realised at the exit; Sharpe is of daily PnL, annualised with 365 days; max drawdown is of the
    equity curve in quote currency (a positive number).

    ``long_short`` (a diagnostic, not what the bot can trade): the same signals long **and** short,
    each held ``hold_ns`` with no overlap per symbol (0: every signal), what this backtest reported
    before the bot's lifecycle was shared. ``decision_pnl``: each decision's net PnL (at its entry,
    in time order), for intervals; ``entry_times`` / ``exit_times``: each trade's bars (ns), what the
    test comparing the backtest with the bot reads.
    """
    p = np.asarray(p, dtype=np.float64)
    r = np.asarray(fwd_ret, dtype=np.float64)
    order = np.argsort(times, kind="stable")
    p, r, t = p[order], r[order], np.asarray(times, dtype=np.int64)[order]
    g = None if groups is None else np.asarray(groups)[order]
    side = trade_sides(p, costs, None if move_bps is None else np.asarray(move_bps, dtype=np.float64)[order])
    side[np.isnan(r)] = 0.0
    bar = int(bar_ns) if bar_ns else _infer_bar_ns(t)
    horizon_bars = max(1, round(hold_ns / bar)) if hold_ns > 0 else 1
    # the bot's book: long-only, entered by the rule, closed by the lifecycle at the horizon
    keys = g.tolist() if g is not None else [None] * len(t)
    by_group: dict[Any, list[int]] = {}
    for i, k in enumerate(keys):
        by_group.setdefault(k, []).append(i)
    entries: list[int] = []
    exits: list[int] = []
    signal_of = {1.0: Signal.BUY, -1.0: Signal.SELL, 0.0: Signal.HOLD}
    for idx in by_group.values():
        book = simulate_book(t[idx].tolist(), [signal_of[float(side[i])] for i in idx], horizon_bars, bar)
        for trade in book:
            entries.append(idx[trade.entry])
            exits.append(trade.exit_ns)
    when = np.asarray(exits, dtype=np.int64)
    at = np.argsort(when, kind="stable")
    entry = np.asarray(entries, dtype=np.int64)[at]
    gross_bps = r[entry] * 1e4
    out = _summary(gross_bps, when[at], costs)
    decision_pnl = np.zeros(len(t))
    decision_pnl[entry] = out.pop("pnl")
    out.update(
        {
            "long_trades": out["trades"],
            "short_trades": 0,
            "horizon_bars": horizon_bars,
            "round_trip_cost_bps": costs.round_trip_bps,
            "edge_filter": float(move_bps is not None and costs.edge_filter),
        }
    )
    # the diagnostic long + short book (no lifecycle: a position per signal, non-overlapping)
    ls = non_overlapping(side, t, hold_ns, g) if hold_ns > 0 else side
    traded = ls != 0
    ls_out = _summary(ls[traded] * r[traded] * 1e4, t[traded], costs)
    ls_out["long_trades"] = int((ls > 0).sum())
    ls_out["short_trades"] = int((ls < 0).sum())
    out["long_short"] = {k: ls_out[k] for k in _LONG_SHORT_KEYS}
    out["decision_pnl"] = decision_pnl
    out["entry_times"] = t[entry].tolist()  # each trade's entry and exit decision times (ns)
    out["exit_times"] = when[at].tolist()
    return out
