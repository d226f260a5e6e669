"""Simulated shoppers for retrainer tests: position-biased examination, clicks and purchases
driven by a preference function, written straight into an event store and snapshotted."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from feedback_ingest.store import EventStore, write_snapshot
from services.encoding.versions import onnx_encoder
from services.events import InteractionEvent, QueryEvent
from services.index.store import open_index
from services.products import Product
from services.registry import ModelRegistry
from services.settings import Settings

Preference = Callable[[str, Product, int], float]
"""(query, product, position) -> probability that an examined product is clicked."""

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def simulate(
    settings: Settings,
    products: list[Product],
    queries: list[str],
    prefer: Preference,
    *,
    sessions: int,
    seed: int,
) -> Path:
    """Serve ``sessions`` searches with production, let shoppers react, snapshot the result."""
    rng = random.Random(seed)
    registry = ModelRegistry(settings.registry_dir)
    version = registry.pointers().production
    assert version is not None
    encoder = onnx_encoder(registry, version)
    by_id = {p.id: p for p in products}
    index = open_index(settings, version)
    lists: list[QueryEvent] = []
    actions: list[InteractionEvent] = []
    try:
        for n in range(sessions):
            text = rng.choice(queries)
            hits = index.search(encoder.encode_query(text), limit=10)
            when = T0 + timedelta(minutes=n)
            qid = f"sim-{seed}-{n}"
            lists.append(
                QueryEvent(
                    query_id=qid,
                    timestamp=when,
                    user_query=text,
                    session_id=f"s{n}",
                    model_version=version,
                    arm="production",
                    results=[h.product_id for h in hits],
                )
            )
            for position, hit in enumerate(hits, start=1):
                if rng.random() > 1.0 / position**0.7:  # position-based examination
                    continue
                product = by_id[hit.product_id]
                act = "impression"
                if rng.random() < prefer(text, product, position):
                    act = "purchase" if rng.random() < 0.5 else "click"
                actions.append(
                    InteractionEvent(
                        event_id=f"{qid}-{position}",
                        query_id=qid,
                        action_name=act,
                        object_id=hit.product_id,
                        position=position,
                        timestamp=when,
                    )
                )
    finally:
        index.close()
    return _store(settings, lists, actions)


def _store(settings: Settings, lists: list[QueryEvent], actions: list[InteractionEvent]) -> Path:
    with EventStore(settings.store_path, settings.ingest.store) as store:
        store.write_batch(lists, actions)
        return write_snapshot(store, settings.exports_dir)


def simulate_interleaved(
    settings: Settings,
    products: list[Product],
    queries: list[str],
    prefer: Preference,
    *,
    sessions: int,
    seed: int,
) -> Path:
    """Serve ``sessions`` team-draft interleavings of the canary and production (what canary-
    bucket shoppers see), let shoppers react, snapshot the result."""
    from services.interleaving import TEAM_A, rng_for, team_draft

    rng = random.Random(seed)
    registry = ModelRegistry(settings.registry_dir)
    pointers = registry.pointers()
    assert pointers.production is not None and pointers.canary is not None
    by_id = {p.id: p for p in products}
    versions = (pointers.canary, pointers.production)
    encoders = [onnx_encoder(registry, v) for v in versions]
    indexes = [open_index(settings, v) for v in versions]
    lists: list[QueryEvent] = []
    actions: list[InteractionEvent] = []
    try:
        for n in range(sessions):
            text = rng.choice(queries)
            ranked = [
                [h.product_id for h in index.search(encoder.encode_query(text), limit=10)]
                for encoder, index in zip(encoders, indexes, strict=True)
            ]
            qid = f"sim-i-{seed}-{n}"
            merged = team_draft(ranked[0], ranked[1], 10, rng_for(qid))
            when = T0 + timedelta(days=1, minutes=n)
            lists.append(
                QueryEvent(
                    query_id=qid,
                    timestamp=when,
                    user_query=text,
                    session_id=f"si{seed}-{n}",
                    model_version=versions[0],
                    arm="interleaved",
                    results=[pid for pid, _ in merged],
                    teams=[versions[0] if team == TEAM_A else versions[1] for _, team in merged],
                    control_version=versions[1],
                )
            )
            for position, (pid, _) in enumerate(merged, start=1):
                if rng.random() > 1.0 / position**0.7:
                    continue
                if rng.random() < prefer(text, by_id[pid], position):
                    actions.append(
                        InteractionEvent(
                            event_id=f"{qid}-{position}",
                            query_id=qid,
                            action_name="click",
                            object_id=pid,
                            position=position,
                            timestamp=when,
                        )
                    )
    finally:
        for index in indexes:
            index.close()
    return _store(settings, lists, actions)
