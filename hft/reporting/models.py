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


def metric_table(view: ModelsView, prefix: str = "gate.") -> list[dict[str, Any]]:
    """Rows ``{metric, champion, challenger}`` of the promotion gate's metrics (``gate.*``)."""
    names = sorted(
        {m for v in view.versions.values() for m in v.metrics if m.startswith(prefix)}
        - {f"{prefix}window_start_ns", f"{prefix}window_end_ns"}
    )
    return [
        {
            "metric": n.removeprefix(prefix),
            **{a: view.versions[a].metrics.get(n) if a in view.versions else None for a in ALIASES},
        }
        for n in names
    ]


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


class MlflowRest:
    """Read-only calls of MLflow's REST API (the ``mlflow`` package takes seconds to import)."""

    def __init__(self, base_url: str, timeout: float = 5.0) -> None:
        self.base = base_url.rstrip("/")
        self.timeout = timeout

    def get(self, path: str, params: dict[str, Any]) -> dict[str, Any] | None:
        """GET ``/api/2.0/mlflow/<path>``; None when MLflow says the resource does not exist."""
        try:
            resp = httpx.get(f"{self.base}/api/2.0/mlflow/{path}", params=params, timeout=self.timeout)
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
    api = MlflowRest(settings.mlflow_uri)
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
        )
    found = (
        api.get(
            "model-versions/search",
            {"filter": f"name='{name}'", "max_results": newest, "order_by": "version_number DESC"},
        )
        or {}
    )
    by_version = {v: a for a, v in aliases.items()}
    latest = [
        {
            "version": str(mv["version"]),
            "created": _ts(int(mv.get("creation_timestamp", 0))),
            "aliases": by_version.get(str(mv["version"]), ""),
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
