"""Holds the loaded model versions (encoder + index) and routes each request to one of them.

Consistency rule: a request served by version V encodes its query with V's encoder and
searches V's index, so both live in one immutable :class:`LoadedModel`.

Hot swap: :meth:`ModelHolder.refresh` loads what the registry names *beside* what serves,
warms it, then replaces ``holder.routing`` with one reference assignment. A request reads
``holder.routing`` once, so it uses one old or one new :class:`Routing`, never a mix.

Release rule (a reference count per generation): every swap starts a new *generation*. Each
HTTP request pins the generation current when it starts (:meth:`ModelHolder.lease`, applied
to every request by the app's middleware) and reads ``holder.routing`` afterwards, so it uses
the routing of its pinned generation or a newer one. A version that last served in generation
G is closed once it serves no more and no request pinned at G or earlier is in flight. No
timer is involved: a slow request keeps its models open for as long as it runs.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from services.encoding.onnx_splade import OnnxSpladeEncoder
from services.encoding.versions import onnx_encoder
from services.errors import FlywheelError, RegistryError
from services.events import ServingArm
from services.identity import in_canary, routing_secret
from services.index.base import ProductIndex
from services.index.bm25 import Bm25Encoder
from services.index.store import open_index, opened_store
from services.metrics import (
    INDEX_POINTS,
    MODEL_INFO,
    MODEL_LOADS,
    MODEL_RELEASES,
    MODEL_SWAPS,
    set_build_info,
)
from services.registry import ModelRegistry
from services.settings import Settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """One servable model version: its query encoder and its own index."""

    version: str
    encoder: OnnxSpladeEncoder
    bm25: Bm25Encoder
    index: ProductIndex
    products: int


@dataclass(frozen=True, slots=True)
class Serving:
    """What the registry pointers ask to serve (or what a routing serves)."""

    production: str | None
    canary: str | None = None
    canary_fraction: float = 0.0

    def __str__(self) -> str:
        if self.canary is None:
            return f"production {self.production}"
        return f"production {self.production} + canary {self.canary} ({self.canary_fraction:.0%})"


@dataclass(frozen=True, slots=True)
class Routing:
    """What serves right now; swapped as a whole so a request never sees half a change."""

    production: LoadedModel
    canary: LoadedModel | None = None
    canary_fraction: float = 0.0
    secret: bytes = b""
    """Key of the bucket hash (:func:`services.identity.routing_secret`)."""

    @property
    def key(self) -> Serving:
        """The versions and fraction this routing serves."""
        canary = self.canary.version if self.canary else None
        return Serving(self.production.version, canary, self.canary_fraction if canary else 0.0)

    def models(self) -> list[LoadedModel]:
        """Production, then the canary if any."""
        return [self.production] + ([self.canary] if self.canary else [])

    def route(self, unit: str | None) -> tuple[LoadedModel, ServingArm]:
        """Pick the arm by a keyed hash of the unit (``server.canary_unit``: the client key,
        or the session id) and the canary version.

        A shopper stays on one arm for the life of a canary; nobody without the key can
        compute which units land in the canary, and each new canary draws its units afresh,
        so no unit is a canary for every version.
        """
        if self.canary is not None and in_canary(
            self.secret, self.canary.version, unit, self.canary_fraction
        ):
            return self.canary, "canary"
        return self.production, "production"


def load_version(settings: Settings, registry: ModelRegistry, version: str) -> LoadedModel:
    """Load a version's ONNX encoder (hash-checked against its card) and open its index."""
    encoder = onnx_encoder(registry, version, threads=settings.encoder.query_threads)
    index = open_index(settings, version)
    # One warm-up query so the first shopper does not pay for lazy initialisation.
    index.search(encoder.encode_query("warm up"), limit=1)
    products = index.count()
    INDEX_POINTS.labels(model_version=version).set(products)
    MODEL_LOADS.labels(outcome="ok").inc()
    logger.info("loaded model %s", version)
    return LoadedModel(
        version=version, encoder=encoder, bm25=Bm25Encoder(), index=index, products=products
    )


WARM_UP_QUERIES = ("cordless drill", "kitchen faucet", "led light bulb 60w", "garden hose")


def warm_up(model: LoadedModel) -> None:
    """A few searches in every mode, so the first shoppers after a swap see normal latency."""
    for query in WARM_UP_QUERIES:
        splade = model.encoder.encode_query(query)
        bm25 = model.bm25.encode_query(query)
        model.index.search(splade, limit=10)
        model.index.search(bm25, using="bm25", limit=10)
        model.index.hybrid_search(splade, bm25, limit=10)


class ModelHolder:
    """Owns the current :class:`Routing`; requests read ``holder.routing`` once and use it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.registry = ModelRegistry(settings.registry_dir)
        self.secret = routing_secret(settings)
        self.routing: Routing | None = None
        self.last_error: str | None = None
        self._refreshing = threading.Lock()  # one load-and-swap at a time
        self._state = threading.Lock()  # generation, pins and open models
        self._generation = 0
        self._pins: Counter[int] = Counter()
        self._open: dict[str, LoadedModel] = {}
        self._last_served: dict[str, int] = {}
        self._reserved: set[str] = set()
        self._failed_snapshot: str | None = None
        self._closed = False

    @contextlib.contextmanager
    def lease(self) -> Iterator[Routing | None]:
        """Pin the current generation for one request and yield the routing to use."""
        with self._state:
            generation = self._generation
            self._pins[generation] += 1
        try:
            yield self.routing
        finally:
            with self._state:
                self._pins[generation] -= 1
                if not self._pins[generation]:
                    del self._pins[generation]
                unused = self._take_unused()
            _release(unused)

    def load(self) -> Routing:
        """Load what the registry pointers name (at startup); raises what went wrong."""
        self._refresh(force=True)
        if self.routing is None:
            raise RegistryError(f"No model could be loaded from {self.registry.root}.")
        return self.routing

    def refresh(self, *, force: bool = False) -> bool:
        """Swap to what the registry pointers name if that changed; True if it swapped.

        A failure keeps the old routing, counts ``flywheel_model_swaps_total{outcome="failed"}``
        and sets :attr:`last_error` (shown on /status and /admin/models; /readyz gives only its
        reason code). Unchanged pointers are not retried after a failure unless ``force`` is
        set (POST /admin/reload).
        """
        try:
            return self._refresh(force=force)
        except (FlywheelError, OSError, ValueError):
            return False

    def _refresh(self, *, force: bool) -> bool:
        with self._refreshing:
            if self._closed:
                return False
            serving = self.routing.key if self.routing else None
            snapshot = self.registry.pointer_snapshot()
            if snapshot == self._failed_snapshot and not force:
                return False
            try:
                wanted = self._wanted()
                if wanted == serving:
                    self._failed_snapshot, self.last_error = None, None
                    return False
                models = self._load_beside(wanted)
            except (FlywheelError, OSError, ValueError) as exc:
                self._fail(snapshot, serving, exc)
                raise
            self._swap(wanted, models)
            return True

    def _wanted(self) -> Serving:
        pointers = self.registry.pointers()
        if pointers.production is None:
            raise RegistryError(
                f"No production model in {self.registry.root}; run `flywheel index --catalog FILE`."
            )
        fraction = pointers.canary_fraction if pointers.canary else 0.0
        return Serving(pointers.production, pointers.canary, fraction)

    def _load_beside(self, wanted: Serving) -> dict[str, LoadedModel]:
        """Reuse open versions (an Edge shard allows one handle), load and warm the others."""
        needed = [v for v in (wanted.production, wanted.canary) if v is not None]
        with self._state:
            models = {v: self._open[v] for v in needed if v in self._open}
            self._reserved = set(needed)  # not released while we work
        fresh: list[LoadedModel] = []
        try:
            for version in needed:
                if version not in models:
                    fresh.append(load_version(self.settings, self.registry, version))
                    models[version] = fresh[-1]
                    warm_up(fresh[-1])
        except BaseException:
            with self._state:
                self._reserved.clear()
            _release(fresh)
            raise
        return models

    def _swap(self, wanted: Serving, models: dict[str, LoadedModel]) -> None:
        assert wanted.production is not None
        canary = models[wanted.canary] if wanted.canary else None
        routing = Routing(
            models[wanted.production], canary, wanted.canary_fraction, secret=self.secret
        )
        old = self.routing
        with self._state:
            for model in old.models() if old else []:
                self._last_served[model.version] = self._generation
            self._open.update(models)
            self.routing = routing  # the swap: one reference assignment
            self._generation += 1
            self._reserved.clear()
            unused = self._take_unused()
        _release(unused)
        self._failed_snapshot, self.last_error = None, None
        MODEL_SWAPS.labels(outcome="ok").inc()
        MODEL_INFO.clear()
        MODEL_INFO.labels(model_version=routing.production.version, arm="production").set(1)
        if routing.canary:
            MODEL_INFO.labels(model_version=routing.canary.version, arm="canary").set(1)
        set_build_info(model_version=routing.production.version)
        logger.info("now serving %s (was %s)", routing.key, old.key if old else "nothing")
        if old is None or old.production.version != routing.production.version:
            self._move_alias(routing.production)

    def _move_alias(self, production: LoadedModel) -> None:
        """On a Qdrant server, point the alias ``<prefix>`` at production for outside readers
        (Qdrant Edge has no aliases: nothing to do)."""
        try:
            with opened_store(self.settings) as store:
                store.set_alias(production.version)
        except FlywheelError as exc:
            self.last_error = f"Serving {production.version}, but the alias was not moved: {exc}"
            logger.error("%s", self.last_error)

    def _fail(self, snapshot: str, serving: Serving | None, exc: Exception) -> None:
        self._failed_snapshot = snapshot
        MODEL_SWAPS.labels(outcome="failed").inc()
        MODEL_LOADS.labels(outcome="failed").inc()
        if serving is None:
            self.last_error = str(exc)
        else:
            self.last_error = (
                f"Could not switch to the registry's models: {exc} Still serving {serving}; "
                "fix the registry (e.g. `flywheel rollback`), then POST /admin/reload."
            )
        logger.error("model refresh failed: %s", self.last_error)

    def _take_unused(self) -> list[LoadedModel]:
        """Under ``_state``: remove and return open versions no request can still use."""
        in_use = {m.version for m in self.routing.models()} if self.routing else set()
        oldest_pin = min(self._pins, default=math.inf)
        unused = [
            v
            for v in self._open
            if v not in in_use
            and v not in self._reserved
            and self._last_served.get(v, -1) < oldest_pin
        ]
        return [self._open.pop(v) for v in unused]

    def open_versions(self) -> list[str]:
        """Versions with an open index: serving, or waiting for in-flight requests."""
        with self._state:
            return sorted(self._open)

    def close(self) -> None:
        """Release every loaded index; later refreshes do nothing."""
        with self._refreshing:
            self._closed = True
            with self._state:
                models = list(self._open.values())
                self._open.clear()
                self.routing = None
            _release(models)


def _release(models: list[LoadedModel]) -> None:
    for model in models:
        try:
            model.index.close()
        except FlywheelError as exc:
            logger.warning("closing the index of %s failed: %s", model.version, exc)
        with contextlib.suppress(KeyError):
            INDEX_POINTS.remove(model.version)
        MODEL_RELEASES.inc()
        logger.info("released model %s", model.version)
