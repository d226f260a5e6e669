"""Liveness, readiness and Prometheus metrics.

The handlers are ``async def`` and read only memory (the routing reference, the sink's
counters, the metric registry), so they run on the event loop and never wait for a worker
thread: a thread pool full of searches, event publishing or admin calls cannot make a probe
time out and get the pod restarted.

``/readyz`` is public: its ``reason`` is one of a few fixed sentences, never the exception
text of a failed load (which names filesystem paths); that text is in the server log and, for
admins, on /status and /admin/models.
"""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from encoder_server.deps import HolderDep, SinkDep
from encoder_server.holder import ModelHolder
from encoder_server.schemas import HealthResponse, ModelStatus, ReadyResponse, ReasonCode
from services.metrics import registry_for

router = APIRouter(tags=["operations"])
metrics_router = APIRouter(tags=["operations"])
"""GET /metrics, included only while it is served on the API port (server.metrics_port unset)."""

DETAILS = "The cause is in the server log, on /status and in /admin/models (admin token)."
REASONS: dict[ReasonCode, str] = {
    "loading": "Loading the models; retry shortly.",
    "no_model": f"No model is loaded: the last load failed; retry shortly. {DETAILS}",
    "refresh_failed": "Serving the loaded models, but the last refresh from the registry "
    f"failed. {DETAILS}",
}


def _reason(holder: ModelHolder) -> ReasonCode | None:
    if holder.routing is None:
        return "no_model" if holder.last_error else "loading"
    return "refresh_failed" if holder.last_error else None


@router.get("/healthz", response_model=HealthResponse)
async def healthz() -> HealthResponse:
    """Liveness: the process answers."""
    return HealthResponse(status="ok")


@router.get("/readyz", response_model=ReadyResponse, responses={503: {"model": ReadyResponse}})
async def readyz(holder: HolderDep, sink: SinkDep) -> ReadyResponse | JSONResponse:
    """Readiness: a production model and its index are loaded."""
    # sink.backlog() only reads counters under a lock that is never held across I/O.
    routing = holder.routing
    code = _reason(holder)
    reason = REASONS[code] if code else None
    if routing is None:
        body = ReadyResponse(
            ready=False,
            models=[],
            canary_fraction=0.0,
            event_backlog=sink.backlog(),
            reason=reason,
            reason_code=code,
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
        reason=reason,
        reason_code=code,
    )


@metrics_router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    """Prometheus exposition of encoder_server's metrics (services.metrics, app "search")."""
    return Response(generate_latest(registry_for("search")), media_type=CONTENT_TYPE_LATEST)
