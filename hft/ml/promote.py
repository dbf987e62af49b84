"""The promotion gate: move ``champion`` to the challenger only when it wins out of sample, after costs.

Both models are compared on the challenger's most recent walk-forward window (its last test fold,
which the challenger's fold model never saw). The challenger's numbers there are logged by its
training run; the champion is scored on the same window now. The challenger must beat the
champion's ROC-AUC by ``settings.promotion_margin_auc`` and not lose money relative to it after
fees. With no champion yet, it must beat the trivial baselines (majority class and persistence)
by the same margin. The decision is logged to MLflow either way.

mlflow is imported inside functions: it costs seconds at start-up.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from hft.config import Settings, use_mlflow
from hft.features.spec import STORE_SPECS
from hft.ml.dataset import load_bars
from hft.ml.evaluate import score
from hft.ml.registry import load_ensemble
from hft.storage.db import engine

log = logging.getLogger(__name__)


@dataclass
class PromotionDecision:
    """Whether ``champion`` moved, why, and the numbers compared."""

    promoted: bool
    reason: str
    model_name: str
    challenger_version: str | None = None
    champion_version: str | None = None  # the champion before the decision
    challenger: dict[str, float] = field(default_factory=dict)
    champion: dict[str, float] = field(default_factory=dict)
    baselines: dict[str, float] = field(default_factory=dict)
    shadow: dict[str, dict[str, Any]] = field(default_factory=dict)  # the live record, role -> stats

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dict(self.__dict__)


def _alias(client: Any, name: str, alias: str) -> Any | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def label_config(tags: dict[str, str]) -> tuple[int, str]:
    """A version's label: horizon (bars) and kind; a model from before labels had both is 1-bar direction."""
    return int(tags.get("horizon") or 1), str(tags.get("label_kind") or "direction")


def decide(
    challenger: dict[str, float],
    champion: dict[str, float] | None,
    baselines: dict[str, float],
    margin: float,
    same_labels: bool = True,
) -> tuple[bool, str]:
    """The gate itself, on plain numbers (unit-testable).

    ``same_labels`` False: the two models predict different labels (another horizon or label
    kind), so their AUCs are not comparable. The challenger must then beat the best trivial
    baseline on its own labels by the margin, and make at least the champion's net PnL after fees
    over the same window (each trading at its own horizon: that number is comparable).
    """
    auc = challenger["roc_auc"]
    if champion is not None and not same_labels:
        best_name = max(baselines, key=lambda k: baselines[k])
        best = baselines[best_name]
        c_pnl, pnl = champion["net_pnl_after_fees"], challenger["net_pnl_after_fees"]
        if auc < best + margin:
            return False, (
                f"labels differ from the champion's; challenger AUC {auc:.4f} < {best_name} {best:.4f} "
                f"+ margin {margin} on its own labels"
            )
        if pnl < c_pnl:
            return False, (
                f"labels differ from the champion's; challenger net PnL after fees {pnl:.2f} < champion {c_pnl:.2f}"
            )
        return True, (
            f"labels differ from the champion's (AUCs not comparable); challenger AUC {auc:.4f} beats "
            f"{best_name} {best:.4f} by >= {margin} and net PnL {pnl:.2f} >= champion {c_pnl:.2f}"
        )
    if champion is None:
        best_name = max(baselines, key=lambda k: baselines[k])
        best = baselines[best_name]
        if auc >= best + margin:
            return True, (
                f"no champion yet; challenger AUC {auc:.4f} beats best trivial baseline "
                f"{best_name} {best:.4f} by >= {margin}"
            )
        return False, f"no champion yet; challenger AUC {auc:.4f} < {best_name} {best:.4f} + margin {margin}"
    c_auc, c_pnl = champion["roc_auc"], champion["net_pnl_after_fees"]
    pnl = challenger["net_pnl_after_fees"]
    if auc < c_auc + margin:
        return False, f"challenger AUC {auc:.4f} < champion {c_auc:.4f} + margin {margin}"
    if pnl < c_pnl:
        return False, f"challenger net PnL after fees {pnl:.2f} < champion {c_pnl:.2f}"
    return True, (
        f"challenger AUC {auc:.4f} >= champion {c_auc:.4f} + {margin} and net PnL {pnl:.2f} >= {c_pnl:.2f}"
    )


def not_servable(feature_version: str | None) -> str | None:
    """Why a model on ``feature_version`` cannot be champion, or None when it can.

    The API scores from the online store's rows, so a model on features the store does not hold
    would answer 503 to every request once it served (a model trained with
    ``HFT_FEATURE_SPEC=bar_features_ohlcv_v2`` before that spec is in the store)."""
    if feature_version is None or feature_version in STORE_SPECS:
        return None
    return (
        f"uses feature spec {feature_version}, which the feature store does not hold "
        f"({', '.join(sorted(STORE_SPECS))}): the API could not serve it"
    )


def promote(settings: Settings, model_name: str | None = None) -> PromotionDecision:
    """Compare challenger and champion on the most recent walk-forward window; move ``champion`` if it wins."""
    import mlflow
    from mlflow import MlflowClient

    name = model_name or settings.model_name
    uri = use_mlflow(settings)
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(tracking_uri=uri)
    chal = _alias(client, name, "challenger")
    if chal is None:
        return PromotionDecision(False, f"{name} has no challenger", name)
    champ = _alias(client, name, "champion")
    decision = PromotionDecision(
        False,
        "",
        name,
        challenger_version=str(chal.version),
        champion_version=str(champ.version) if champ else None,
    )
    if champ is not None and str(champ.version) == str(chal.version):
        decision.reason = f"version {chal.version} is already champion"
        return decision
    unservable = not_servable(chal.tags.get("feature_version"))
    if unservable:
        decision.reason = f"challenger v{chal.version} {unservable}"
        _log_decision(settings, decision, 0, 0)
        return decision
    m = client.get_run(chal.run_id).data.metrics
    decision.challenger = {
        "roc_auc": m["gate.roc_auc"],
        "accuracy": m["gate.accuracy"],
        "net_pnl_after_fees": m["gate.net_pnl_after_fees"],
        "trades": m["gate.trades"],
    }
    decision.baselines = {b: m[f"gate.{b}.roc_auc"] for b in ("majority", "persistence")}
    start, end = int(m["gate.window_start_ns"]), int(m["gate.window_end_ns"])
    champ_numbers = None
    note = ""
    if champ is not None:
        tags = chal.tags
        ens, _ = load_ensemble(settings, f"models:/{name}/{champ.version}")
        bars = load_bars(tags["data"], tags["symbols"].split(","), tags["interval"])
        rep = score(
            settings,
            ens,
            bars,
            tags["interval"],
            pd.Timestamp(start - 1, tz="UTC"),
            pd.Timestamp(end - 1, tz="UTC"),
            n_boot=0,
        )
        champ_numbers = {
            "roc_auc": rep["roc_auc"],
            "accuracy": rep["accuracy"],
            "net_pnl_after_fees": rep["backtest"]["net_pnl_after_fees"],
            "trades": float(rep["backtest"]["trades"]),
        }
        decision.champion = champ_numbers
        champ_end = champ.tags.get("train_end")
        if champ_end and pd.Timestamp(champ_end) > pd.Timestamp(start, tz="UTC"):
            note = " (the champion trained on part of this window: the comparison favours it)"
    same_labels = champ is None or label_config(champ.tags) == label_config(chal.tags)
    decision.promoted, decision.reason = decide(
        decision.challenger, champ_numbers, decision.baselines, settings.promotion_margin_auc, same_labels
    )
    decision.reason += note
    if decision.promoted and champ is not None and settings.shadow_min_decisions > 0:
        _live_gate(settings, decision)
    if decision.promoted:
        client.set_registered_model_alias(name, "champion", str(chal.version))
    _log_decision(settings, decision, start, end)
    log.info("promotion of %s v%s: %s (%s)", name, chal.version, decision.promoted, decision.reason)
    return decision


def live_record_ready(settings: Settings, model_name: str | None = None) -> tuple[bool, str]:
    """Whether the promotion gate can judge now: ``(ready, why)``.

    Not ready only while a challenger and a champion (other versions) exist, the live gate is on
    (``settings.shadow_min_decisions`` > 0) and the challenger has fewer judged live decisions
    beside the champion than that; everything else (no challenger, no champion, gate off, enough
    decisions) is for the gate itself to decide.
    """
    from mlflow import MlflowClient

    from hft.trading import shadow

    name = model_name or settings.model_name
    need = settings.shadow_min_decisions
    if need <= 0:
        return True, "live gate off (shadow_min_decisions 0)"
    client = MlflowClient(tracking_uri=use_mlflow(settings))
    chal, champ = _alias(client, name, "challenger"), _alias(client, name, "champion")
    if chal is None or champ is None or str(chal.version) == str(champ.version):
        return True, f"{name}: challenger {chal and chal.version}, champion {champ and champ.version}"
    with engine(settings).connect() as conn:
        live = shadow.compare(
            conn, settings.model_copy(update={"model_name": name}), str(chal.version), str(champ.version)
        )
    have = live["challenger"].decisions if "challenger" in live else 0
    why = f"{name} v{chal.version} has {have} of {need} live decisions beside champion v{champ.version}"
    return have >= need, why


def _live_gate(settings: Settings, decision: PromotionDecision) -> None:
    """The second gate: the challenger's live (shadow) record beside the champion's on the same bars."""
    from hft.trading import shadow  # pandas-heavy, and only when the live gate is on

    assert decision.challenger_version is not None
    with engine(settings).connect() as conn:
        live = shadow.compare(
            conn,
            settings.model_copy(update={"model_name": decision.model_name}),
            decision.challenger_version,
            decision.champion_version,
        )
    decision.shadow = {role: s.as_dict() for role, s in live.items()}
    ok, why = shadow.gate(live, settings.shadow_min_decisions, settings.shadow_auc_tolerance)
    decision.promoted = ok
    decision.reason = f"{decision.reason}; {why}" if ok else why


def _log_decision(settings: Settings, d: PromotionDecision, start: int, end: int) -> None:
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=use_mlflow(settings))
    mlflow.set_experiment(f"{d.model_name}-promotions")
    with mlflow.start_run(run_name=f"promote-v{d.challenger_version}"):
        mlflow.set_tags({"kind": "promotion", "promoted": str(d.promoted), "reason": d.reason[:5000]})
        mlflow.log_params(
            {
                "challenger_version": d.challenger_version,
                "champion_version": d.champion_version,
                "margin_auc": settings.promotion_margin_auc,
                "window_start": str(pd.Timestamp(start, tz="UTC")),
                "window_end": str(pd.Timestamp(end, tz="UTC")),
            }
        )
        metrics = {f"challenger.{k}": v for k, v in d.challenger.items()}
        metrics.update({f"champion.{k}": v for k, v in d.champion.items()})
        metrics.update({f"baseline.{k}.roc_auc": v for k, v in d.baselines.items()})
        for role, live in d.shadow.items():
            metrics.update(
                {f"live.{role}.{k}": float(v) for k, v in live.items() if isinstance(v, int | float)}
            )
        metrics["promoted"] = float(d.promoted)
        mlflow.log_metrics(metrics)
    if d.challenger_version:
        client.set_model_version_tag(
            d.model_name, d.challenger_version, "promotion_decision", "promoted" if d.promoted else "rejected"
        )
        client.set_model_version_tag(d.model_name, d.challenger_version, "promotion_reason", d.reason[:5000])
