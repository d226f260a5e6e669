"""Holds the loaded model versions (encoder + index) and routes each request to one of them.

Consistency rule: a request served by version V encodes its query with V's encoder and
searches V's index, so both live in one immutable :class:`LoadedModel`.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from services.encoding.onnx_splade import OnnxSpladeEncoder
from services.errors import RegistryError
from services.events import Arm
from services.index.base import ProductIndex
from services.index.bm25 import Bm25Encoder
from services.index.factory import open_index
from services.metrics import INDEX_POINTS, MODEL_INFO, MODEL_LOADS
from services.registry import ONNX_FILE, TOKENIZER_FILE, ModelRegistry
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
class Routing:
    """What serves right now; swapped as a whole so a request never sees half a change."""

    production: LoadedModel
    canary: LoadedModel | None = None
    canary_fraction: float = 0.0

    def route(self, session_id: str | None) -> tuple[LoadedModel, Arm]:
        """Pick the arm by a stable hash of the session, so a shopper stays on one arm."""
        if self.canary is None or self.canary_fraction <= 0 or not session_id:
            return self.production, "production"
        bucket = int.from_bytes(hashlib.blake2b(session_id.encode(), digest_size=8).digest())
        if bucket / 2**64 < self.canary_fraction:
            return self.canary, "canary"
        return self.production, "production"


def load_version(settings: Settings, registry: ModelRegistry, version: str) -> LoadedModel:
    """Load a version's ONNX encoder (hash-checked against its card) and open its index."""
    card = registry.card(version)
    encoder = OnnxSpladeEncoder(
        registry.verified_file(version, ONNX_FILE),
        registry.verified_file(version, TOKENIZER_FILE),
        max_query_tokens=card.max_query_tokens,
        max_doc_tokens=card.max_doc_tokens,
        threads=settings.encoder.query_threads,
    )
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


class ModelHolder:
    """Owns the current :class:`Routing`; requests read ``holder.routing`` once and use it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.registry = ModelRegistry(settings.registry_dir)
        self.routing: Routing | None = None
        self.last_error: str | None = None

    def load(self) -> Routing:
        """Load what the registry pointers name (production, and canary when set)."""
        pointers = self.registry.pointers()
        if pointers.production is None:
            raise RegistryError(
                f"No production model in {self.registry.root}; run `flywheel index --catalog FILE`."
            )
        production = load_version(self.settings, self.registry, pointers.production)
        canary = (
            load_version(self.settings, self.registry, pointers.canary) if pointers.canary else None
        )
        self.routing = Routing(production, canary, pointers.canary_fraction if canary else 0.0)
        MODEL_INFO.clear()
        MODEL_INFO.labels(model_version=production.version, arm="production").set(1)
        if canary:
            MODEL_INFO.labels(model_version=canary.version, arm="canary").set(1)
        return self.routing

    def close(self) -> None:
        """Release every loaded index."""
        if self.routing is None:
            return
        self.routing.production.index.close()
        if self.routing.canary:
            self.routing.canary.index.close()
        self.routing = None
