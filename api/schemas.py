"""Request and response models of the model server (pydantic v2)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
Symbol = Annotated[str, Field(min_length=2, max_length=20, pattern=r"^[A-Za-z0-9]+$", examples=["BTCUSDT"])]


class PredictRequest(BaseModel):
    """Score the symbol's latest online feature vector."""

    model_config = ConfigDict(extra="forbid")
    symbol: Symbol

    @field_validator("symbol")
    @classmethod
    def _upper(cls, v: str) -> str:
        return v.upper()


class PredictResponse(BaseModel):
    """One prediction, traceable to its model version and feature row."""

    symbol: str
    prob_up: float
    signal: Literal["buy", "sell", "hold"]
    model_name: str
    model_version: str
    feature_version: str
    feature_time: datetime
    served_at: datetime
    latency_ms: float


class BatchRequest(BaseModel):
    """Explicit feature rows (name -> value), oldest first; each row is scored as a decision bar."""

    model_config = ConfigDict(extra="forbid")
    rows: Annotated[list[dict[str, FiniteFloat]], Field(min_length=1, max_length=1000)]


class BatchResponse(BaseModel):
    """Probabilities and signals for the rows (one per complete window)."""

    model_name: str
    model_version: str
    feature_version: str
    prob_up: list[float]
    signals: list[Literal["buy", "sell", "hold"]]
    latency_ms: float


class ModelInfo(BaseModel):
    """The model serving now."""

    name: str
    version: str
    feature_version: str
    feature_names: list[str]
    sequence_length: int
    alias: str
    shadow_version: str | None = Field(
        default=None,
        description="The challenger version this worker shadow-scores beside the champion (None: none)",
    )


class ReloadResponse(BaseModel):
    """Outcome of a reload request."""

    swapped: bool
    model: ModelInfo | None
    error: str | None = None


class Health(BaseModel):
    """Liveness."""

    status: Literal["ok"]


class Ready(BaseModel):
    """Readiness: a champion model, its feature version and the online store."""

    ready: bool
    reasons: list[str]
    model_version: str | None = None


class ErrorBody(BaseModel):
    """Every error: a kind and a reason, never a stack trace."""

    error: str
    reason: str


class BotStateRequest(BaseModel):
    """Why the bot's trading state changes (stored with the state)."""

    reason: str = Field(default="api", min_length=1, max_length=200)


class BotState(BaseModel):
    """The trading bot's state: active, reducing or halted."""

    state: str
    reason: str
    updated_by: str | None = None
