"""Small constructors for events, so tests read as session logs."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from feedback_ingest.store import EventStore, StoreSettings
from services.events import Action, Arm, InteractionEvent, QueryEvent

T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
_IDS = itertools.count()


def at(minutes: float) -> datetime:
    """T0 plus ``minutes``."""
    return T0 + timedelta(minutes=minutes)


def query(
    query_id: str,
    text: str,
    results: list[str],
    *,
    minute: float = 0,
    version: str = "v1",
    arm: Arm = "production",
    page: int = 1,
    teams: list[str] | None = None,
    control: str | None = None,
    session: str | None = None,
    client_key: str | None = None,
    offset: int = 0,
) -> QueryEvent:
    return QueryEvent(
        query_id=query_id,
        timestamp=at(minute),
        user_query=text,
        session_id=session or f"s-{query_id}",
        client_key=client_key,
        offset=offset,
        model_version=version,
        arm=arm,
        page=page,
        results=results,
        teams=teams,
        control_version=control,
    )


def act(
    query_id: str, action: Action, product: str, position: int, *, minute: float = 1
) -> InteractionEvent:
    return InteractionEvent(
        event_id=f"e{next(_IDS)}",
        query_id=query_id,
        action_name=action,
        object_id=product,
        position=position,
        session_id=f"s-{query_id}",
        timestamp=at(minute),
    )


def open_store(path: Path, settings: StoreSettings | None = None) -> Iterator[EventStore]:
    store = EventStore(path, settings)
    try:
        yield store
    finally:
        store.close()
