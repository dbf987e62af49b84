"""The live record of champion and challenger: every closed bar scored by both, judged by the next bar.

The API's predict-ahead writes a row per closed bar and model (``trading.shadow_predictions``,
migration ``0004_shadow``): the champion's, whose signal the bot trades, and, while a model holds
the ``challenger`` alias, the challenger's, which nobody trades. A bar's outcome is the next
bar's announced close, so both models are judged on the same bars by the same rule as their
training label (up when the next close is above this one). A paper trade is taken where the
bot would trade (``prob_up >= buy_threshold`` buys, ``<= sell_threshold`` sells), held one bar,
and pays the bot's costs on both sides: taker fee plus slippage (``HFT_TAKER_FEE_BPS``,
``HFT_SLIPPAGE_BPS``) at the bar closes. That is the fill model of the paper book without its
tick-level search for the next trade, so the two are close but not equal; the comparison
between the two models is like for like.

``hft shadow`` prints the record; ``hft.ml.promote`` asks for ``shadow_min_decisions`` of it
before it lets a challenger take over; the dashboard's Models page shows it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, text

from hft.features.bars import interval_ns

ROLES = ("champion", "challenger")


@dataclass(frozen=True)
class ShadowRow:
    """One model's prediction for one closed bar."""

    symbol: str
    interval: str
    open_time: datetime
    model_name: str
    model_version: str
    role: str
    prob_up: float
    close: float
    feature_time: datetime


@dataclass(frozen=True)
class ShadowStats:
    """How one model version did on the bars it scored live (those with an outcome yet)."""

    model_name: str
    model_version: str
    role: str
    decisions: int
    accuracy: float
    roc_auc: float
    base_rate: float
    trades: int
    gross_edge_bps: float
    net_pnl: float
    since: datetime | None

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["since"] = self.since.isoformat() if self.since else None
        return out


def record(conn: Connection, rows: Sequence[ShadowRow]) -> int:
    """Insert the rows (a bar scored again by the same version writes nothing); the number new."""
    if not rows:
        return 0
    result = conn.execute(
        text(
            "INSERT INTO trading.shadow_predictions (symbol, interval, open_time, model_name, model_version, "
            "role, prob_up, close, feature_time) VALUES (:symbol, :interval, :open_time, :model_name, "
            ":model_version, :role, :prob_up, :close, :feature_time) ON CONFLICT DO NOTHING"
        ),
        [asdict(r) for r in rows],
    )
    return int(result.rowcount or 0)


def read(conn: Connection, model_name: str, since: datetime | None = None) -> pd.DataFrame:
    """The record of one registered model's versions, oldest first."""
    rows = conn.execute(
        text(
            "SELECT symbol, interval, open_time, model_name, model_version, role, prob_up, close "
            "FROM trading.shadow_predictions WHERE model_name = :name "
            "AND (CAST(:since AS timestamptz) IS NULL OR open_time >= :since) ORDER BY open_time"
        ),
        {"name": model_name, "since": since},
    ).all()
    cols = ["symbol", "interval", "open_time", "model_name", "model_version", "role", "prob_up", "close"]
    return pd.DataFrame([tuple(r) for r in rows], columns=cols)


def with_outcomes(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows whose next bar is in the record, with ``ret`` (next close / close - 1) and ``up``."""
    if frame.empty:
        return frame.assign(ret=pd.Series(dtype=float), up=pd.Series(dtype=bool))
    bars = frame.drop_duplicates(["symbol", "interval", "open_time"])[
        ["symbol", "interval", "open_time", "close"]
    ]
    step = bars["interval"].map(lambda i: pd.Timedelta(interval_ns(i), unit="ns"))
    nxt = bars.assign(open_time=bars["open_time"] - step).rename(columns={"close": "next_close"})
    out = frame.merge(nxt, on=["symbol", "interval", "open_time"], how="inner")
    out["ret"] = out["next_close"] / out["close"] - 1.0
    out["up"] = out["ret"] > 0
    return out.drop(columns="next_close")


def stats(
    frame: pd.DataFrame,
    buy_threshold: float,
    sell_threshold: float,
    cost_bps_per_side: float,
    notional: float,
) -> list[ShadowStats]:
    """Accuracy, ROC-AUC, base rate and the one-bar paper PnL after costs of each version."""
    from sklearn.metrics import roc_auc_score

    judged = with_outcomes(frame)
    out: list[ShadowStats] = []
    if judged.empty:
        return out
    for (name, version), g in judged.groupby(["model_name", "model_version"], sort=False):
        up = g["up"].to_numpy()
        prob = g["prob_up"].to_numpy()
        side = np.where(prob >= buy_threshold, 1.0, np.where(prob <= sell_threshold, -1.0, 0.0))
        traded = side != 0
        gross = side[traded] * g["ret"].to_numpy()[traded]
        net = gross - 2 * cost_bps_per_side / 1e4
        auc = float(roc_auc_score(up, prob)) if 0 < up.sum() < len(up) else math.nan
        out.append(
            ShadowStats(
                model_name=str(name),
                model_version=str(version),
                role=str(g["role"].iloc[-1]),
                decisions=len(g),
                accuracy=float(((prob > 0.5) == up).mean()),
                roc_auc=auc,
                base_rate=float(max(up.mean(), 1 - up.mean())),
                trades=int(traded.sum()),
                gross_edge_bps=float(gross.mean() * 1e4) if traded.any() else math.nan,
                net_pnl=float(net.sum() * notional),
                since=pd.Timestamp(g["open_time"].min()).to_pydatetime(),
            )
        )
    return out


def compare(
    conn: Connection, settings: Any, challenger_version: str, champion_version: str | None
) -> dict[str, ShadowStats]:
    """Challenger and champion on the bars both scored live (``{"challenger": .., "champion": ..}``;
    a role is missing when that version has no judged bar yet)."""
    frame = read(conn, settings.model_name)
    versions = [v for v in (challenger_version, champion_version) if v]
    frame = frame[frame["model_version"].isin(versions)]
    if champion_version:
        keys = ["symbol", "interval", "open_time"]
        both = frame.groupby(keys)["model_version"].nunique()
        common = both[both == len(versions)].index
        frame = frame.set_index(keys).loc[lambda f: f.index.isin(common)].reset_index()
    by_version = {
        s.model_version: s
        for s in stats(
            frame,
            settings.buy_threshold,
            settings.sell_threshold,
            settings.taker_fee_bps + settings.slippage_bps,
            settings.order_notional,
        )
    }
    out = {}
    if challenger_version in by_version:
        out["challenger"] = by_version[challenger_version]
    if champion_version and champion_version in by_version:
        out["champion"] = by_version[champion_version]
    return out


def summary(conn: Connection, settings: Any, since: datetime | None = None) -> list[ShadowStats]:
    """Every version's live record (newest version first)."""
    frame = read(conn, settings.model_name, since)
    rows = stats(
        frame,
        settings.buy_threshold,
        settings.sell_threshold,
        settings.taker_fee_bps + settings.slippage_bps,
        settings.order_notional,
    )
    return sorted(rows, key=lambda s: (len(s.model_version), s.model_version), reverse=True)


def gate(live: dict[str, ShadowStats], min_decisions: int, auc_tolerance: float = 0.0) -> tuple[bool, str]:
    """Whether the challenger's live record lets it take over (the walk-forward gate came first):
    at least ``min_decisions`` judged bars shared with the champion, a ROC-AUC no more than
    ``auc_tolerance`` below the champion's and a paper PnL after costs no worse than the
    champion's on those bars."""
    ch, champ = live.get("challenger"), live.get("champion")
    have = ch.decisions if ch else 0
    if ch is None or champ is None or have < min_decisions:
        return (
            False,
            f"waiting for live decisions: the challenger has {have} of {min_decisions} beside the champion",
        )
    auc, c_auc = ch.roc_auc, champ.roc_auc
    if not (math.isnan(auc) or math.isnan(c_auc)) and auc < c_auc - auc_tolerance:
        within = f" - tolerance {auc_tolerance}" if auc_tolerance else ""
        return False, f"live ROC-AUC {auc:.4f} < champion's {c_auc:.4f}{within} over {have} bars"
    if ch.net_pnl < champ.net_pnl:
        return (
            False,
            f"live paper PnL after costs {ch.net_pnl:.2f} < champion's {champ.net_pnl:.2f} over {have} bars",
        )
    return True, (
        f"live over {have} bars: ROC-AUC {auc:.4f} vs {c_auc:.4f}, paper PnL after costs "
        f"{ch.net_pnl:.2f} vs {champ.net_pnl:.2f}"
    )
