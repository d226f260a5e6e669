"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from encoder_server.deps import HolderDep, SinkDep
from encoder_server.schemas import HealthResponse, ModelStatus, ReadyResponse

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=HealthResponse)
def healthz() -> HealthResponse:
    """Liveness: the process answers."""
    return HealthResponse(status="ok")


@router.get("/readyz", response_model=ReadyResponse, responses={503: {"model": ReadyResponse}})
def readyz(holder: HolderDep, sink: SinkDep) -> ReadyResponse | JSONResponse:
    """Readiness: a production model and its index are loaded."""
    routing = holder.routing
    if routing is None:
        body = ReadyResponse(
            ready=False,
            models=[],
            canary_fraction=0.0,
            event_backlog=sink.backlog(),
            reason=holder.last_error or "loading",
        )
        return JSONResponse(body.model_dump(), status_code=503)
    models = [
        ModelStatus(
            version=routing.production.version,
            arm="production",
            products=routing.production.products,
        )
    ]
    if routing.canary:
        models.append(
            ModelStatus(
                version=routing.canary.version, arm="canary", products=routing.canary.products
            )
        )
    return ReadyResponse(
        ready=True,
        models=models,
        canary_fraction=routing.canary_fraction,
        event_backlog=sink.backlog(),
        reason=holder.last_error,
    )


@router.get("/metrics", include_in_schema=False)
def metrics() -> Response:
    """Prometheus exposition of every flywheel_* metric."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
