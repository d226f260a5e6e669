"""Response bodies of the public API (they feed the OpenAPI schema)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from services.events import Arm, ServingArm
from services.settings import SearchMode


class ResultItem(BaseModel):
    """One product in a result list."""

    id: str = Field(description="Product id from the catalog.")
    position: int = Field(ge=1, description="1-based rank across pages.")
    score: float
    payload: dict[str, Any]
    team: str | None = Field(
        default=None,
        description="Interleaved lists only: the model version whose ranking contributed it.",
    )


class SearchResponse(BaseModel):
    """A served result list; ``query_id`` attributes later interactions to it."""

    query_id: str
    model_version: str
    arm: Arm
    mode: SearchMode
    page: int
    k: int
    results: list[ResultItem]
    took_ms: float


class ErrorResponse(BaseModel):
    """Every 4xx/5xx body: a machine-readable code and a message saying what to fix."""

    error: str
    message: str
    detail: list[dict[str, Any]] | None = None


class ModelStatus(BaseModel):
    """A loaded model version and the arm it serves."""

    version: str
    arm: ServingArm
    products: int


ReasonCode = Literal["loading", "no_model", "refresh_failed"]


class ReadyResponse(BaseModel):
    """Readiness: ready once a production model and its index are loaded."""

    ready: bool
    models: list[ModelStatus]
    canary_fraction: float
    event_backlog: int = Field(
        description="Events not yet acknowledged by Kafka; searches are served regardless."
    )
    reason: str | None = Field(
        default=None,
        description="Why not ready, or what went wrong while ready, in words (a fixed sentence "
        "per reason_code; the error itself is on /status and /admin/models, admin token).",
    )
    reason_code: ReasonCode | None = Field(
        default=None,
        description="loading, no_model (the last load failed) or refresh_failed (still "
        "serving the loaded models).",
    )


class HealthResponse(BaseModel):
    """Liveness."""

    status: Literal["ok"]
