"""Dependencies of the routes (``Annotated`` aliases, as in full-stack-fastapi-template)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader

from api.metrics import ApiMetrics
from hft.config import Settings
from hft.trading.scoring import Scorer

_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="HFT_API_KEY")


async def get_settings(request: Request) -> Settings:
    """The app's settings."""
    settings: Settings = request.app.state.settings
    return settings


async def get_scorer(request: Request) -> Scorer:
    """The scorer, or 503 when the model server has none (its dependencies failed to load)."""
    scorer: Scorer | None = request.app.state.scorer
    if scorer is None:
        raise HTTPException(503, f"scorer unavailable: {request.app.state.scorer_error}")
    return scorer


async def get_metrics(request: Request) -> ApiMetrics:
    """The app's Prometheus metrics."""
    metrics: ApiMetrics = request.app.state.metrics
    return metrics


async def get_clock(request: Request) -> Callable[[], datetime]:
    """The injected wall clock."""
    clock: Callable[[], datetime] = request.app.state.clock
    return clock


async def require_api_key(
    settings: Annotated[Settings, Depends(get_settings)],
    key: Annotated[str | None, Security(_api_key_header)] = None,
) -> None:
    """Reject a mutating request without the right ``X-API-Key`` (401)."""
    expected = settings.api_key.get_secret_value() if settings.api_key else ""
    if not expected:
        raise HTTPException(401, "mutating endpoints are disabled: the server has no HFT_API_KEY")
    if not key or not secrets.compare_digest(key.encode(), expected.encode()):
        raise HTTPException(401, "missing or wrong X-API-Key")


SettingsDep = Annotated[Settings, Depends(get_settings)]
ScorerDep = Annotated[Scorer, Depends(get_scorer)]
MetricsDep = Annotated[ApiMetrics, Depends(get_metrics)]
ClockDep = Annotated[Callable[[], datetime], Depends(get_clock)]
ApiKeyDep = Depends(require_api_key)
