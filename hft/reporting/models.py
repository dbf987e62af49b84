"""The Models page: champion and challenger from the MLflow registry, their metrics and links.

Read through MLflow's REST API with httpx: the dashboard stays light and starts fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx

from hft.config import Settings, TransientError

ALIASES = ("champion", "challenger")


@dataclass(frozen=True)
class ModelVersionView:
    """One registered version as the page shows it."""

    alias: str
    name: str
    version: str
    run_id: str
    created: datetime
    updated: datetime
    metrics: dict[str, float]
    params: dict[str, str]
    tags: dict[str, str]
    version_url: str
    run_url: str
    folds: int | None = None  # walk-forward test windows of its training run


@dataclass(frozen=True)
class ModelsView:
    """Champion, challenger, the latest versions and the registry's times."""

    name: str
    versions: dict[str, ModelVersionView]  # alias -> version
    latest: list[dict[str, Any]] = field(default_factory=list)  # newest versions: version, created, aliases
    last_retrain: datetime | None = None
    last_promotion: datetime | None = None
    registry_url: str = ""


def public_mlflow_url(settings: Settings) -> str:
    """MLflow's URL for the browser (``HFT_MLFLOW_PUBLIC_URL``, else the tracking URI)."""
    return (settings.mlflow_public_url or settings.mlflow_uri).rstrip("/")


def _ts(ms: int | None) -> datetime:
    return datetime.fromtimestamp((ms or 0) / 1000, UTC)


BASELINES = ("majority", "persistence", "logistic", "lightgbm_plain")
WF_COLUMNS = ("roc_auc", "accuracy", "log_loss", "brier", "bt.net_pnl_after_fees", "bt.sharpe", "bt.trades")


def _ns_date(ns: float | None) -> str | None:
    return None if ns is None else f"{datetime.fromtimestamp(ns / 1e9, UTC):%Y-%m-%d %H:%M}"


def metric_table(view: ModelsView, prefix: str = "gate.") -> list[dict[str, Any]]:
    """Rows ``{metric, champion, challenger}`` of the promotion gate's metrics (``gate.*``).

    The first two rows say which test window each version's numbers are from: each version's
    ``gate.*`` metrics were computed on the last walk-forward window of its own training run.
    """
    window = (f"{prefix}window_start_ns", f"{prefix}window_end_ns")
    names = sorted(
        {m for v in view.versions.values() for m in v.metrics if m.startswith(prefix)} - set(window)
    )
    rows: list[dict[str, Any]] = [
        {
            "metric": label,
            **{
                a: _ns_date(view.versions[a].metrics.get(key)) if a in view.versions else None
                for a in ALIASES
            },
        }
        for label, key in (("window start (UTC)", window[0]), ("window end (UTC)", window[1]))
    ]
    rows += [
        {
            "metric": n.removeprefix(prefix),
            **{a: view.versions[a].metrics.get(n) if a in view.versions else None for a in ALIASES},
        }
        for n in names
    ]
    return rows


def walk_forward_table(version: ModelVersionView) -> list[dict[str, Any]]:
    """One row per model of the walk-forward report (``wf.<model>.<metric>``), baselines last."""
    models: dict[str, dict[str, Any]] = {}
    for key, value in version.metrics.items():
        if not key.startswith("wf."):
            continue
        model, _, metric = key[3:].partition(".")
        if metric in WF_COLUMNS:
            models.setdefault(model, {})[metric] = value
    order = sorted(models, key=lambda m: (m in BASELINES, m != "ensemble", m))
    return [{"model": m, "kind": "baseline" if m in BASELINES else "model", **models[m]} for m in order]


def pnl_notes(version: ModelVersionView) -> tuple[str, str]:
    """Why the walk-forward net PnL and the gate's differ: (walk-forward note, gate note).

    The walk-forward report pools every out-of-sample test window of the training run; the
    gate's numbers are the most recent window alone, which is what ``hft promote`` compares.
    """
    m = version.metrics
    wf = f"Walk-forward of {version.alias} v{version.version}: every out-of-sample test window pooled"
    if version.folds:
        wf += f" ({version.folds} windows)"
    wf_pnl, wf_trades = m.get("wf.ensemble.bt.net_pnl_after_fees"), m.get("wf.ensemble.bt.trades")
    if wf_pnl is not None and wf_trades is not None:
        wf += f"; ensemble net PnL {wf_pnl:,.1f} over {wf_trades:,.0f} trades"
    wf += " (bt.* = cost-aware backtest of the confident signals)."
    gate = (
        "Promotion gate: each version's numbers on the most recent test window of its own training run only"
    )
    start, end = m.get("gate.window_start_ns"), m.get("gate.window_end_ns")
    if start is not None and end is not None:
        gate += f" ({version.alias}: {_ns_date(start)} → {_ns_date(end)} UTC"
        g_pnl, g_trades = m.get("gate.net_pnl_after_fees"), m.get("gate.trades")
        if g_pnl is not None and g_trades is not None:
            gate += f", net PnL {g_pnl:,.1f} over {g_trades:,.0f} trades"
        gate += ")"
    gate += (
        ". That window is one part of the walk-forward, so its net PnL differs from the pooled one; "
        "`hft promote` scores the champion again on the challenger's window before it decides."
    )
    return wf, gate


def reader_auth(settings: Settings) -> tuple[str, str] | None:
    """MLflow's read-only login from the settings, when MLflow asks for one."""
    auth = getattr(settings, "mlflow_auth", None)  # settings without MLflow logins: no auth
    got = auth(read_only=True) if callable(auth) else None
    return (str(got[0]), str(got[1])) if got else None


class MlflowRest:
    """Read-only calls of MLflow's REST API (the ``mlflow`` package takes seconds to import)."""

    def __init__(self, base_url: str, timeout: float = 5.0, auth: tuple[str, str] | None = None) -> None:
        self.base = base_url.rstrip("/")
        self.timeout = timeout
        self.auth = auth

    def get(self, path: str, params: dict[str, Any]) -> dict[str, Any] | None:
        """GET ``/api/2.0/mlflow/<path>``; None when MLflow says the resource does not exist."""
        try:
            resp = httpx.get(
                f"{self.base}/api/2.0/mlflow/{path}", params=params, timeout=self.timeout, auth=self.auth
            )
        except httpx.HTTPError as exc:
            raise TransientError(f"MLflow at {self.base} unreachable: {exc}") from exc
        if resp.status_code == 404 or (resp.status_code == 400 and "RESOURCE_DOES_NOT_EXIST" in resp.text):
            return None
        if resp.status_code >= 400:
            raise TransientError(f"MLflow {path} answered {resp.status_code}: {resp.text[:200]}")
        body: dict[str, Any] = resp.json()
        return body


def _pairs(items: list[dict[str, Any]] | None, value: str = "value") -> dict[str, Any]:
    return {i["key"]: i.get(value) for i in items or []}


def models_view(settings: Settings, model_name: str | None = None, newest: int = 10) -> ModelsView:
    """Read the registry: the aliased versions with their runs, and the newest versions."""
    name = model_name or settings.model_name
    api = MlflowRest(settings.mlflow_uri, auth=reader_auth(settings))
    base = public_mlflow_url(settings)
    registered = api.get("registered-models/get", {"name": name})
    if registered is None:
        return ModelsView(name, {}, registry_url=f"{base}/#/models")
    aliases = {a["alias"]: str(a["version"]) for a in registered["registered_model"].get("aliases", [])}
    versions: dict[str, ModelVersionView] = {}
    for alias in ALIASES:
        if alias not in aliases:
            continue
        got = api.get("registered-models/alias", {"name": name, "alias": alias})
        if got is None:
            continue
        mv = got["model_version"]
        run_id = mv.get("run_id", "")
        run = (api.get("runs/get", {"run_id": run_id}) or {}).get("run") if run_id else None
        data = (run or {}).get("data", {})
        exp = (run or {}).get("info", {}).get("experiment_id", "")
        folds = None
        if run_id:
            hist = api.get("metrics/get-history", {"run_id": run_id, "metric_key": "fold.ensemble.roc_auc"})
            folds = len({h.get("step") for h in (hist or {}).get("metrics", [])}) or None
        versions[alias] = ModelVersionView(
            alias=alias,
            name=name,
            version=str(mv["version"]),
            run_id=run_id,
            created=_ts(int(mv.get("creation_timestamp", 0))),
            updated=_ts(int(mv.get("last_updated_timestamp", 0))),
            metrics={k: float(v) for k, v in _pairs(data.get("metrics")).items() if v is not None},
            params={k: str(v) for k, v in _pairs(data.get("params")).items()},
            tags={**_pairs(data.get("tags")), **_pairs(mv.get("tags"))},
            version_url=f"{base}/#/models/{quote(name)}/versions/{mv['version']}",
            run_url=f"{base}/#/experiments/{exp}/runs/{run_id}" if run else "",
            folds=folds,
        )
    found = (
        api.get(
            "model-versions/search",
            {"filter": f"name='{name}'", "max_results": newest, "order_by": "version_number DESC"},
        )
        or {}
    )
    by_version: dict[str, list[str]] = {}
    for a, v in sorted(aliases.items()):  # one version may hold several aliases
        by_version.setdefault(v, []).append(a)
    latest = [
        {
            "version": str(mv["version"]),
            "created": _ts(int(mv.get("creation_timestamp", 0))),
            "aliases": ", ".join(by_version.get(str(mv["version"]), [])),
            "run_id": mv.get("run_id", ""),
        }
        for mv in found.get("model_versions", [])
    ]
    last_retrain = max((r["created"] for r in latest), default=None)
    champ = versions.get("champion")
    last_promotion = None
    if champ is not None:
        promoted = next((v for k, v in champ.tags.items() if "promoted_at" in k), None)
        last_promotion = datetime.fromisoformat(promoted) if promoted else champ.updated
    return ModelsView(
        name, versions, latest, last_retrain, last_promotion, registry_url=f"{base}/#/models/{quote(name)}"
    )


@dataclass(frozen=True)
class ModelFeatures:
    """Which feature set a registered model reads."""

    alias: str
    version: str
    feature_version: str


def model_features(settings: Settings, model_name: str | None = None) -> ModelFeatures | None:
    """The feature set of the champion (what the API serves), else of the challenger; None if neither."""
    name = model_name or settings.model_name
    api = MlflowRest(settings.mlflow_uri, auth=reader_auth(settings))
    for alias in ALIASES:
        got = api.get("registered-models/alias", {"name": name, "alias": alias})
        if got is None:
            continue
        mv = got["model_version"]
        fv = _pairs(mv.get("tags")).get("feature_version")
        if fv:
            return ModelFeatures(alias, str(mv["version"]), str(fv))
    return None
