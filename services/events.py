"""Event shapes (after OpenSearch's User Behavior Insights) and the sink served lists go to."""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

from services.metrics import EVENT_SINK_ERRORS

logger = logging.getLogger(__name__)

Arm = Literal["production", "canary"]


class QueryEvent(BaseModel):
    """A served result list, logged by encoder_server for every search."""

    type: Literal["query"] = "query"
    query_id: str
    timestamp: datetime = Field(default_factory=lambda: datetime.now(UTC))
    user_query: str
    session_id: str | None = None
    client_id: str | None = None
    model_version: str
    arm: Arm
    mode: str = "splade"
    filters: dict[str, Any] = Field(default_factory=dict)
    page: int = 1
    results: list[str] = Field(description="Ranked product ids of the served page.")


class EventSink(Protocol):
    """Where served lists go. Must never block or fail a search."""

    def emit(self, event: QueryEvent) -> None: ...

    def close(self) -> None: ...


class JsonlSink:
    """Appends served lists to a local JSON-lines file (the default before Kafka is set up)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._handle = path.open("a", encoding="utf-8")

    def emit(self, event: QueryEvent) -> None:
        line = event.model_dump_json()
        try:
            with self._lock:
                self._handle.write(line + "\n")
                self._handle.flush()
        except (OSError, ValueError):
            EVENT_SINK_ERRORS.labels(sink="jsonl").inc()
            logger.exception("could not record served list %s", event.query_id)

    def close(self) -> None:
        with self._lock:
            self._handle.close()


class MemorySink:
    """Keeps served lists in memory (tests, benchmarks)."""

    def __init__(self) -> None:
        self.events: list[QueryEvent] = []

    def emit(self, event: QueryEvent) -> None:
        self.events.append(event)

    def close(self) -> None:
        return None

    def dump(self) -> list[dict[str, Any]]:
        return [json.loads(e.model_dump_json()) for e in self.events]
