"""POST /events: the storefront's impressions, clicks, add-to-carts and purchases.

A 2xx answer means every event it counts as accepted or pending cannot be lost: acknowledged
by Kafka, or fsynced in the server's spool and sent later (also after a restart). A full
spool or a server shutting down answers 503 with Retry-After for the events it refused.
Waiting for the spool and Kafka happens in this route's own small thread pool, so health
probes and searches never queue behind it.
"""

from __future__ import annotations

import functools
import json
import time
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from encoder_server.deps import SettingsDep, SinkDep
from encoder_server.schemas import ErrorResponse
from services.events import (
    MAX_EVENT_BYTES,
    InteractionEvent,
    MalformedEventError,
    validate_event,
)
from services.metrics import EVENT_BACKLOG, EVENTS_LATENCY, EVENTS_RECEIVED, EVENTS_REFUSED
from services.settings import Settings

router = APIRouter(tags=["events"])

MAX_BATCH = 500


class EventBatch(BaseModel):
    """Interactions to record; each is validated on its own."""

    events: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_BATCH)


class RejectedEvent(BaseModel):
    """An event that was not taken, and why."""

    index: int = Field(description="Position of the event in the request's list.")
    event_id: str | None
    code: str = Field(
        description="invalid_field, missing_id, unknown_action, unknown_type, "
        "oversized or backlog_full (spool full or server stopping: retry later)."
    )
    reason: str


class EventsResponse(BaseModel):
    """Which events were taken. Re-sending a batch is safe: event_id makes it idempotent."""

    accepted: int = Field(description="Acknowledged by the event bus (acks=all).")
    pending: int = Field(
        description="Stored durably in the server's spool, not yet acknowledged by the bus; "
        "sent later, also after a restart (never lost)."
    )
    rejected: list[RejectedEvent]


def _limiter(request: Request, settings: Settings) -> anyio.CapacityLimiter:
    """This app's own bound on threads waiting for the spool and Kafka (made in the loop)."""
    state = request.app.state
    limiter: anyio.CapacityLimiter | None = getattr(state, "events_limiter", None)
    if limiter is None:
        limiter = state.events_limiter = anyio.CapacityLimiter(settings.server.events_workers)
    return limiter


def _validate(index: int, item: dict[str, Any]) -> InteractionEvent | RejectedEvent:
    raw_id = item.get("event_id")
    event_id = raw_id if isinstance(raw_id, str) else None
    try:
        if len(json.dumps(item)) > MAX_EVENT_BYTES:
            raise MalformedEventError("oversized", f"event larger than {MAX_EVENT_BYTES} bytes")
        if item.get("type", "interaction") != "interaction":
            raise MalformedEventError(
                "unknown_type",
                "only interaction events are accepted; served lists are logged by /search itself",
            )
        event = validate_event({**item, "type": "interaction"})
    except MalformedEventError as exc:
        return RejectedEvent(index=index, event_id=event_id, code=exc.code, reason=exc.reason)
    assert isinstance(event, InteractionEvent)
    return event


@router.post(
    "/events",
    response_model=EventsResponse,
    responses={422: {"model": ErrorResponse}, 503: {"model": EventsResponse}},
)
async def post_events(
    request: Request, batch: EventBatch, sink: SinkDep, settings: SettingsDep
) -> EventsResponse | JSONResponse:
    """Record shopper interactions (impression, click, add_to_cart, purchase) for retraining."""
    started = time.perf_counter()
    checked = [_validate(i, item) for i, item in enumerate(batch.events)]
    valid = [c for c in checked if isinstance(c, InteractionEvent)]
    rejected = [c for c in checked if isinstance(c, RejectedEvent)]
    for r in rejected:
        EVENTS_REFUSED.labels(reason=r.code).inc()
    publish = functools.partial(sink.publish, valid, timeout_s=settings.server.events_ack_timeout_s)
    outcome = await anyio.to_thread.run_sync(publish, limiter=_limiter(request, settings))
    refused = set(outcome.refused)
    for index, item in enumerate(checked):
        if isinstance(item, InteractionEvent) and item.event_id in refused:
            rejected.append(
                RejectedEvent(
                    index=index,
                    event_id=item.event_id,
                    code="backlog_full",
                    reason="event spool is full or the server is stopping; retry later",
                )
            )
            EVENTS_REFUSED.labels(reason="backlog_full").inc()
    for event in valid:
        if event.event_id not in refused:
            EVENTS_RECEIVED.labels(action=event.action_name).inc()
    EVENT_BACKLOG.set(sink.backlog())
    body = EventsResponse(
        accepted=len(outcome.accepted),
        pending=len(outcome.pending),
        rejected=sorted(rejected, key=lambda r: r.index),
    )
    if refused:
        return JSONResponse(body.model_dump(), status_code=503, headers={"Retry-After": "1"})
    EVENTS_LATENCY.observe(time.perf_counter() - started)  # refusals count in availability
    return body
