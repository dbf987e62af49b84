"""The Models page: champion and challenger from the MLflow registry, their metrics and links."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

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


def metric_table(view: ModelsView) -> list[dict[str, Any]]:
    """Rows ``{metric, champion, challenger}`` over the union of both runs' metrics, baselines last."""
    names = sorted({m for v in view.versions.values() for m in v.metrics},
                   key=lambda n: ("baseline" in n, n))
    return [{"metric": n, **{a: view.versions[a].metrics.get(n) if a in view.versions else None for a in ALIASES}}
            for n in names]


def models_view(settings: Settings, model_name: str | None = None, newest: int = 10) -> ModelsView:
    """Read the registry: the aliased versions with their runs, and the newest versions."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    name = model_name or settings.model_name
    client = MlflowClient(tracking_uri=settings.mlflow_uri)
    base = public_mlflow_url(settings)
    try:
        registered = client.get_registered_model(name)
    except MlflowException as exc:
        if "RESOURCE_DOES_NOT_EXIST" in str(getattr(exc, "error_code", "")) or "not found" in str(exc).lower():
            return ModelsView(name, {}, registry_url=f"{base}/#/models")
        raise TransientError(f"MLflow at {settings.mlflow_uri}: {exc}") from exc
    versions: dict[str, ModelVersionView] = {}
    for alias in ALIASES:
        if alias not in (registered.aliases or {}):
            continue
        mv = client.get_model_version_by_alias(name, alias)
        run = client.get_run(mv.run_id) if mv.run_id else None
        exp = run.info.experiment_id if run else ""
        versions[alias] = ModelVersionView(
            alias=alias, name=name, version=str(mv.version), run_id=mv.run_id or "",
            created=_ts(mv.creation_timestamp), updated=_ts(mv.last_updated_timestamp),
            metrics=dict(run.data.metrics) if run else {}, params=dict(run.data.params) if run else {},
            tags={**(run.data.tags if run else {}), **(mv.tags or {})},
            version_url=f"{base}/#/models/{quote(name)}/versions/{mv.version}",
            run_url=f"{base}/#/experiments/{exp}/runs/{mv.run_id}" if run else "",
        )
    latest_mvs = client.search_model_versions(f"name = '{name}'", max_results=newest,
                                              order_by=["version_number DESC"])
    by_version = {str(v): a for a, v in (registered.aliases or {}).items()}
    latest = [{"version": str(mv.version), "created": _ts(mv.creation_timestamp),
               "aliases": by_version.get(str(mv.version), ""), "run_id": mv.run_id} for mv in latest_mvs]
    last_retrain = max((r["created"] for r in latest), default=None)
    champ = versions.get("champion")
    last_promotion = None
    if champ is not None:
        promoted = next((v for k, v in champ.tags.items() if "promoted_at" in k), None)
        last_promotion = datetime.fromisoformat(promoted) if promoted else champ.updated
    return ModelsView(name, versions, latest, last_retrain, last_promotion,
                      registry_url=f"{base}/#/models/{quote(name)}")
