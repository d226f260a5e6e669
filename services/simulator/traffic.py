"""Simulated shoppers driving the real HTTP API: ``GET /search``, then ``POST /events``.

Sessions arrive as a Poisson process (exponential gaps at ``sessions_per_s``); each issues a
geometric number of searches for intents drawn from the training split, reacts to each served
list with :class:`~services.simulator.behaviour.ShopperBehaviour` and reports what it did as a
storefront would, attributed to the list's ``query_id``. At most ``concurrency`` sessions are in
flight; an arrival beyond that is turned away and counted (a saturated shop loses shoppers).
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from services.settings import SimulatorSettings
from services.simulator.behaviour import ShopperBehaviour, searches_in_session
from services.simulator.intents import IntentPool

logger = logging.getLogger(__name__)

LATENCY_WINDOW = 2000
"""Searches behind the live latency percentiles."""


@dataclass
class TrafficStats:
    """Counters of a running simulation; safe to read from another thread."""

    sessions: int = 0
    turned_away: int = 0
    searches: int = 0
    search_errors: int = 0
    events_sent: int = 0
    events_accepted: int = 0
    events_pending: int = 0
    events_rejected: int = 0
    actions: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    """Every search's latency as the shopper saw it, in order (8 bytes a search)."""
    started: float = field(default_factory=time.monotonic)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record_search(self, latency_ms: float) -> None:
        with self._lock:
            self.searches += 1
            self.latencies_ms.append(latency_ms)

    def record_events(self, sent: int, body: dict[str, Any], actions: Counter[str]) -> None:
        with self._lock:
            self.events_sent += sent
            self.events_accepted += int(body.get("accepted", 0))
            self.events_pending += int(body.get("pending", 0))
            self.events_rejected += len(body.get("rejected", []))
            self.actions.update(actions)

    def count(self, name: str) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)

    def latency_percentile(self, q: float, since: int | None = None) -> float | None:
        """The ``q``-quantile (0..1) of search latencies in ms seen by the shoppers: of the
        searches after the first ``since`` ones, or of the last :data:`LATENCY_WINDOW`."""
        with self._lock:
            start = max(len(self.latencies_ms) - LATENCY_WINDOW, 0) if since is None else since
            ordered = sorted(self.latencies_ms[start:])
        if not ordered:
            return None
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def searches_per_s(self) -> float:
        return self.searches / max(time.monotonic() - self.started, 1e-9)


class ShopperTraffic:
    """Poisson-arriving simulated sessions against a running search service."""

    def __init__(
        self,
        base_url: str,
        pool: IntentPool,
        cfg: SimulatorSettings,
        *,
        stats: TrafficStats | None = None,
    ) -> None:
        self.base_url = base_url
        self.pool = pool
        self.cfg = cfg
        self.behaviour = ShopperBehaviour(cfg, pool.max_grade)
        self.stats = stats or TrafficStats()
        self._open = threading.Event()
        self._open.set()

    def pause(self) -> None:
        """Stop new sessions from arriving (those in flight finish)."""
        self._open.clear()

    def resume(self) -> None:
        """Let sessions arrive again."""
        self._open.set()

    async def run(self, stop: Callable[[], bool]) -> TrafficStats:
        """Start sessions until ``stop()`` is true, then let those in flight finish."""
        arrivals = random.Random(self.cfg.seed)
        in_flight: set[asyncio.Task[None]] = set()
        limits = httpx.Limits(max_connections=self.cfg.concurrency * 2)
        async with httpx.AsyncClient(
            base_url=self.base_url, timeout=self.cfg.timeout_s, limits=limits
        ) as client:
            n = 0
            while not stop():
                await asyncio.sleep(arrivals.expovariate(self.cfg.sessions_per_s))
                if stop():
                    break
                if not self._open.is_set():
                    continue
                if len(in_flight) >= self.cfg.concurrency:
                    self.stats.count("turned_away")
                    continue
                # Each session has its own generator: what it does does not depend on timing.
                rng = random.Random(f"{self.cfg.seed}:{n}")
                task = asyncio.create_task(self._session(client, f"sim-{self.cfg.seed}-{n}", rng))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
                n += 1
            if in_flight:
                await asyncio.gather(*in_flight, return_exceptions=True)
        return self.stats

    def start_thread(self, stop: threading.Event) -> threading.Thread:
        """Run in a daemon thread with its own event loop until ``stop`` is set."""
        thread = threading.Thread(
            target=lambda: asyncio.run(self.run(stop.is_set)), name="shoppers", daemon=True
        )
        thread.start()
        return thread

    async def _session(
        self, client: httpx.AsyncClient, session_id: str, rng: random.Random
    ) -> None:
        self.stats.count("sessions")
        address = f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        headers = {"x-forwarded-for": address} if self.cfg.send_forwarded_for else {}
        for _ in range(searches_in_session(rng, self.cfg.queries_per_session)):
            try:
                await self._search_and_react(client, session_id, rng, headers)
            except httpx.HTTPError as exc:
                self.stats.count("search_errors")
                logger.debug("simulated search failed: %s", exc)

    async def _search_and_react(
        self,
        client: httpx.AsyncClient,
        session_id: str,
        rng: random.Random,
        headers: dict[str, str],
    ) -> None:
        intent = self.pool.draw(rng)
        params: dict[str, str | int] = {"q": intent.text, "k": self.cfg.k, "session_id": session_id}
        if self.cfg.mode:
            params["mode"] = self.cfg.mode
        started = time.perf_counter()
        response = await client.get("/search", params=params, headers=headers)
        if response.status_code != 200:
            self.stats.count("search_errors")
            logger.warning("search %r: %s %s", intent.text, response.status_code, response.text)
            return
        self.stats.record_search((time.perf_counter() - started) * 1000)
        body = response.json()
        query_id = body["query_id"]
        ids = [r["id"] for r in body["results"]]
        reactions = self.behaviour.react(ids, intent.grades, rng)
        events = [
            {
                "event_id": f"{query_id}-{n}",
                "query_id": query_id,
                "action_name": r.action,
                "object_id": r.product_id,
                "position": r.position,
                "session_id": session_id,
            }
            for n, r in enumerate(reactions)
        ]
        if not events:
            return
        posted = await client.post("/events", json={"events": events}, headers=headers)
        answer = posted.json() if posted.status_code == 200 else {}
        if posted.status_code != 200:
            logger.warning("POST /events: %s %s", posted.status_code, posted.text)
        self.stats.record_events(len(events), answer, Counter(r.action for r in reactions))
