"""Rounds of simulated shopping without HTTP: the offline runner of the benchmarks.

:class:`OfflineShoppers` plays what ``GET /search`` and a storefront would do for a number of
sessions: sessions are planned as the HTTP simulator plans them (:func:`searches_in_session`),
each is routed to production or the canary by the same keyed bucket as encoder_server
(:func:`services.identity.in_canary`), the canary bucket sees a team-draft interleaving of the
two versions when interleaving is on (:func:`services.interleaving.team_draft`, coin seeded
by the list's id, as served), and shoppers react by true grade
(:class:`~services.simulator.behaviour.ShopperBehaviour`); bots react by their strategy
(:mod:`services.simulator.bots`). Lists come from :class:`ServedLists`, which ranks each
version's lists once through :func:`services.evaluation.runner.rank`, the serving path's own
engine calls. The result is the events a consumer would store (:meth:`RoundLog.write`).
"""

from __future__ import annotations

import logging
import random
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol

from services.encoding.base import SpladeEncoder
from services.evaluation.heldout import IndexOpener
from services.evaluation.runner import rank
from services.events import Arm, InteractionEvent, QueryEvent
from services.identity import client_key, in_canary
from services.index.fusion import DEFAULT_FUSION, Fusion
from services.interleaving import TEAM_A, rng_for, team_draft
from services.settings import SearchMode, SimulatorSettings
from services.simulator.behaviour import Reaction, ShopperBehaviour, searches_in_session
from services.simulator.bots import BotMix, bot_reactions
from services.simulator.intents import Intent, IntentPool

logger = logging.getLogger(__name__)

CHUNK = 2000
"""Lists written per store transaction."""


@dataclass(frozen=True, slots=True)
class Deployment:
    """What serves: production, and optionally a canary on a fraction of sessions."""

    production: str
    canary: str | None = None
    canary_fraction: float = 0.0
    interleave: bool = True
    """Canary-bucket sessions see the canary team-draft interleaved with production."""


class ServedLists:
    """Each version's top-k list per query text, ranked once as ``GET /search`` ranks it."""

    def __init__(
        self,
        open_index: IndexOpener,
        encoder: Callable[[str], SpladeEncoder],
        *,
        mode: SearchMode,
        k: int,
        fusion: Fusion = DEFAULT_FUSION,
        workers: int = 0,
    ) -> None:
        self._open = open_index
        self._encoder = encoder
        self.mode = mode
        self.k = k
        self.fusion = fusion
        self.workers = workers
        self._lists: dict[str, dict[str, list[str]]] = {}

    def prepare(self, version: str, texts: Sequence[str]) -> None:
        """Rank every text not ranked yet with ``version`` (one index opening)."""
        known = self._lists.setdefault(version, {})
        todo = [t for t in dict.fromkeys(texts) if t not in known]
        if not todo:
            return
        encoder = self._encoder(version) if self.mode != "bm25" else None
        with self._open(version) as index:
            hits = rank(
                index,
                encoder,
                todo,
                mode=self.mode,
                limit=self.k,
                fusion=self.fusion,
                workers=self.workers,
            )
        known.update(
            {t: [h.product_id for h in found] for t, found in zip(todo, hits, strict=True)}
        )
        logger.info("ranked %d queries with %s", len(todo), version)

    def add(self, version: str, text: str, results: Sequence[str]) -> None:
        """Record a list ranked elsewhere (e.g. loaded from an earlier run)."""
        self._lists.setdefault(version, {})[text] = list(results)

    def get(self, version: str, text: str) -> list[str]:
        """The list ``version`` serves for ``text`` (ranked on demand if needed)."""
        if text not in self._lists.get(version, {}):
            self.prepare(version, [text])
        return self._lists[version][text]

    def forget(self, version: str) -> None:
        """Drop a version's lists (once it no longer serves)."""
        self._lists.pop(version, None)


@dataclass(frozen=True, slots=True)
class PlannedSearch:
    """One search of a planned session."""

    session_id: str
    address: str
    intent: Intent
    bot: bool


class StoreLike(Protocol):
    """What :meth:`RoundLog.write` needs of :class:`feedback_ingest.store.EventStore`."""

    def write_batch(
        self, queries: Sequence[QueryEvent], interactions: Sequence[InteractionEvent]
    ) -> object: ...


@dataclass
class RoundLog:
    """The events of one simulated round, as the consumer would receive them."""

    lists: list[QueryEvent] = field(default_factory=list)
    interactions: list[InteractionEvent] = field(default_factory=list)
    bot_lists: set[str] = field(default_factory=set)
    """query_ids of the lists bots were served."""
    intents: dict[str, Intent] = field(default_factory=dict)
    """query_id -> what the shopper looked for (true grades: the benchmarks' ground truth)."""
    sessions: int = 0
    actions: Counter[str] = field(default_factory=Counter)

    @property
    def queries(self) -> set[str]:
        """Normalised text of every query issued (for leakage checks)."""
        return {" ".join(e.user_query.lower().split()) for e in self.lists}

    def write(self, store: StoreLike) -> int:
        """Store every list and interaction in chunks, as poll batches are; returns events."""
        by_query: dict[str, list[InteractionEvent]] = {}
        for event in self.interactions:
            by_query.setdefault(event.query_id, []).append(event)
        written = 0
        for start in range(0, len(self.lists), CHUNK):
            lists = self.lists[start : start + CHUNK]
            acts = [e for q in lists for e in by_query.get(q.query_id, [])]
            store.write_batch(lists, acts)
            written += len(lists) + len(acts)
        return written


class OfflineShoppers:
    """Simulated sessions served in-process, with honest shoppers and optional bots."""

    def __init__(
        self,
        pool: IntentPool,
        cfg: SimulatorSettings,
        served: ServedLists,
        *,
        secret: bytes,
        catalog: Sequence[str],
        clock: datetime | None = None,
        canary_unit: Literal["client", "session"] = "client",
    ) -> None:
        self.pool = pool
        self.canary_unit = canary_unit
        """As the server's ``server.canary_unit``: what the canary bucket is drawn by."""
        self.cfg = cfg
        self.served = served
        self.secret = secret
        self.catalog = list(catalog)
        self.behaviour = ShopperBehaviour(cfg, pool.max_grade)
        self.clock = clock or datetime.now(UTC)

    def plan(
        self, rng: random.Random, sessions: int, bots: BotMix | None = None
    ) -> list[PlannedSearch]:
        """Sessions with a geometric number of searches; a share of them bots."""
        planned: list[PlannedSearch] = []
        flood = bots.flood_query if bots and bots.flood_query else None
        for n in range(sessions):
            session = f"sim-{rng.getrandbits(48):012x}-{n}"
            is_bot = bots is not None and rng.random() < bots.share
            if is_bot:
                assert bots is not None
                pool_size = bots.addresses
                host = rng.randrange(pool_size) if pool_size else rng.getrandbits(24)
                address = f"203.0.{host >> 8 & 255}.{host & 255}"
            else:
                address = f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}"
            for _ in range(searches_in_session(rng, self.cfg.queries_per_session)):
                intent = self.pool.draw(rng)
                if is_bot and bots is not None and bots.strategy == "flood":
                    flood = flood or intent.text
                    intent = Intent(intent.query_id, flood, {})
                planned.append(PlannedSearch(session, address, intent, is_bot))
        return planned

    def run(
        self,
        deployment: Deployment,
        sessions: int,
        *,
        seed: str,
        bots: BotMix | None = None,
    ) -> RoundLog:
        """Simulate ``sessions`` sessions against ``deployment``; ``seed`` names the draw."""
        rng = random.Random(seed)
        plan = self.plan(rng, sessions, bots)
        texts = [" ".join(p.intent.text.split()) for p in plan]
        for version in filter(None, (deployment.production, deployment.canary)):
            self.served.prepare(version, texts)
        log = RoundLog(sessions=sessions)
        for search, text in zip(plan, texts, strict=True):
            self.clock += timedelta(milliseconds=5)
            query_id = uuid.UUID(int=rng.getrandbits(128), version=4).hex
            event = self._serve(deployment, search, text, query_id)
            if search.bot:
                assert bots is not None
                reactions = bot_reactions(bots, event.results, self.catalog, rng)
                log.bot_lists.add(query_id)
            else:
                reactions = self.behaviour.react(event.results, search.intent.grades, rng)
            log.lists.append(event)
            log.intents[query_id] = search.intent
            log.interactions += self._interactions(event, search, reactions)
            log.actions.update(r.action for r in reactions)
        return log

    def _serve(
        self, deployment: Deployment, search: PlannedSearch, text: str, query_id: str
    ) -> QueryEvent:
        production = self.served.get(deployment.production, text)
        arm: Arm = "production"
        version, results = deployment.production, production
        teams: list[str] | None = None
        control: str | None = None
        canary = deployment.canary
        unit = (
            client_key(self.secret, search.address)
            if self.canary_unit == "client"
            else search.session_id
        )
        if canary and in_canary(self.secret, canary, unit, deployment.canary_fraction):
            candidate = self.served.get(canary, text)
            version, arm, results = canary, "canary", candidate
            if deployment.interleave:
                merged = team_draft(candidate, production, self.served.k, rng_for(query_id))
                results = [pid for pid, _ in merged]
                teams = [canary if team == TEAM_A else deployment.production for _, team in merged]
                arm, control = "interleaved", deployment.production
        return QueryEvent(
            query_id=query_id,
            timestamp=self.clock,
            user_query=text,
            session_id=search.session_id,
            client_key=client_key(self.secret, search.address),
            model_version=version,
            arm=arm,
            mode=self.served.mode,
            results=results,
            teams=teams,
            control_version=control,
        )

    def _interactions(
        self, event: QueryEvent, search: PlannedSearch, reactions: Sequence[Reaction]
    ) -> list[InteractionEvent]:
        return [
            InteractionEvent(
                event_id=f"{event.query_id}-{i}",
                query_id=event.query_id,
                action_name=r.action,
                object_id=r.product_id,
                position=r.position,
                session_id=search.session_id,
                timestamp=self.clock + timedelta(milliseconds=1),
            )
            for i, r in enumerate(reactions)
        ]
