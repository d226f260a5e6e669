"""Seeded shopper traffic over simulated days, for comparing incremental and full derivation.

The log exercises every path the derived tables have: sessions that span lists and days (and
cross the session cap), clients behind several sessions, canary and interleaved arms, later
result pages, clicks at made-up positions, clicks after the attribution window, interactions
that arrive before their query, and repeated deliveries.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from feedback_ingest.store import EventStore
from services.events import InteractionEvent, QueryEvent

DAY0 = datetime(2024, 5, 1, tzinfo=UTC)
TEXTS = ("drill", "red shoes", "blue hat", "green bag", "saw", "hammer")
PRODUCTS = [f"p{i}" for i in range(24)]


@dataclass
class Day:
    """One simulated day's events, in arrival order."""

    queries: list[QueryEvent] = field(default_factory=list)
    interactions: list[InteractionEvent] = field(default_factory=list)

    def batches(self, rng: random.Random, size: int) -> Iterator[Day]:
        """The day's events shuffled (a click may arrive before its query) in batches."""
        events: list[QueryEvent | InteractionEvent] = [*self.queries, *self.interactions]
        rng.shuffle(events)
        for start in range(0, len(events), size):
            chunk = events[start : start + size]
            yield Day(
                [e for e in chunk if isinstance(e, QueryEvent)],
                [e for e in chunk if isinstance(e, InteractionEvent)],
            )

    def write(self, store: EventStore) -> None:
        store.write_batch(self.queries, self.interactions)


def day_start(day: int) -> datetime:
    return DAY0 + timedelta(days=day)


def traffic(day: int, lists: int, seed: int) -> Day:
    """``lists`` served lists on ``day`` with their shoppers' interactions."""
    rng = random.Random(seed * 1000 + day)
    out = Day()
    for i in range(lists):
        qid = f"d{day}-q{i}"
        ts = day_start(day) + timedelta(minutes=rng.uniform(0, 23 * 60))
        # A few long-lived sessions come back every day, so caps span days.
        session = f"s{rng.randrange(4)}" if rng.random() < 0.3 else f"d{day}-s{rng.randrange(12)}"
        arm = rng.choice(["production", "production", "canary", "interleaved"])
        version = {"production": "v1", "canary": "v2", "interleaved": "v2"}[arm]
        page = 2 if rng.random() < 0.15 else 1
        offset = 8 if page == 2 else 0
        results = rng.sample(PRODUCTS, 8)
        teams = [rng.choice(["v1", "v2"]) for _ in results] if arm == "interleaved" else None
        out.queries.append(
            QueryEvent(
                query_id=qid,
                timestamp=ts,
                user_query=rng.choice(TEXTS),
                session_id=session,
                client_key=f"c{rng.randrange(6)}",
                model_version=version,
                arm=arm,
                page=page,
                offset=offset,
                results=results,
                teams=teams,
                control_version="v1" if arm == "interleaved" else None,
            )
        )
        out.interactions += _reactions(rng, qid, session, ts, results, offset)
    return out


def _reactions(
    rng: random.Random,
    qid: str,
    session: str,
    ts: datetime,
    results: list[str],
    offset: int,
) -> list[InteractionEvent]:
    events: list[InteractionEvent] = []

    def emit(action: str, k: int, minutes: float, *, position: int | None = None) -> None:
        events.append(
            InteractionEvent(
                event_id=f"{qid}-{len(events)}",
                query_id=qid,
                action_name=action,
                object_id=results[k],
                position=position or offset + k + 1,
                session_id=session,
                timestamp=ts + timedelta(minutes=minutes),
            )
        )

    seen = rng.randrange(len(results) + 1)
    for k in range(seen):
        emit("impression", k, 0.1)
    for k in range(seen):
        if rng.random() < 0.45 / (k + 1) ** 0.5:
            late = rng.random() < 0.1  # after the 30-minute attribution window
            emit("click", k, 45 if late else rng.uniform(0.2, 20))
            if rng.random() < 0.3:
                emit("add_to_cart", k, 21)
                if rng.random() < 0.5:
                    emit("purchase", k, 25)
    if rng.random() < 0.1:  # a storefront that reports the wrong position binds nowhere
        emit("click", 0, 1, position=offset + len(results) + 3)
    if events and rng.random() < 0.1:  # a repeated delivery is ignored by its event_id
        events.append(events[-1])
    return events
