"""Encode a catalog with one model version and write that version's index; set up a home or
switch it to a new catalog without touching what serves."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from services.encoding.base import ProgressFn, SpladeEncoder
from services.errors import RegistryError
from services.index.base import IndexStamp, ProductIndex
from services.index.bm25 import Bm25Encoder
from services.index.store import index_store
from services.products import Product
from services.registry import Expected, ModelRegistry
from services.settings import Settings

logger = logging.getLogger(__name__)

CHUNK = 2048
"""Products encoded and upserted per step: bounds memory to a few thousand dense rows."""


def document_encoder(settings: Settings, registry: ModelRegistry, version: str) -> SpladeEncoder:
    """The encoder for a version's documents: its ONNX graph by default, or PyTorch."""
    card = registry.card(version)
    if settings.encoder.doc_backend == "torch":
        from services.encoding.torch_splade import TorchSpladeEncoder

        return TorchSpladeEncoder.from_pretrained(
            str(registry.path(version)),
            max_query_tokens=card.max_query_tokens,
            max_doc_tokens=card.max_doc_tokens,
        )
    from services.encoding.versions import onnx_encoder

    return onnx_encoder(registry, version, threads=settings.encoder.threads)


def index_products(
    settings: Settings,
    version: str,
    products: Sequence[Product],
    *,
    encoder: SpladeEncoder | None = None,
    progress: ProgressFn | None = None,
    overwrite: bool = True,
    record: bool = True,
) -> ProductIndex:
    """Build ``version``'s index over ``products`` (SPLADE and BM25 vectors) and return it open.

    With ``record`` (a registered version), the registry first forgets any earlier index of
    the version (refused while it serves: a serving index is never rebuilt in place) and,
    once every product is stored and flushed, records the index complete with its point count
    and the model's hash, stamped into the index too: only then can the version serve.
    Without it (a throw-away index in a scratch home) nothing is recorded.
    """
    registry = ModelRegistry(settings.registry_dir)
    if record:
        registry.forget_index(version)
    encoder = encoder or document_encoder(settings, registry, version)
    bm25 = Bm25Encoder.for_corpus(p.text for p in products)
    owner = registry.registry_id() if record else "scratch"
    index = index_store(settings).create(version, owner, overwrite=overwrite)
    try:
        texts = [p.text for p in products]
        for start in range(0, len(products), CHUNK):
            chunk = slice(start, start + CHUNK)
            splade = encoder.encode_documents(
                texts[chunk], batch_size=settings.encoder.batch_size, progress=progress
            )
            index.upsert(products[chunk], splade, bm25.encode_documents(texts[chunk]))
        index.finalize()
        points = index.count()
        if record:
            model_hash = registry.card(version).model_hash()
            index.write_stamp(
                IndexStamp(version=version, registry_id=owner, model_hash=model_hash, points=points)
            )
            registry.record_index(version, points)
    except BaseException:
        index.close()
        raise
    logger.info("indexed %d products for %s", points, version)
    return index


def bootstrap_home(
    settings: Settings,
    products: Sequence[Product],
    *,
    model: str | None = None,
    progress: ProgressFn | None = None,
    actor: str | None = None,
) -> str:
    """A new home: register ``model`` (default ``settings.encoder.model``, the bundled one) as
    its first version, save the catalog where later jobs re-index it, index the catalog with
    it and make it production. Returns the version. Registering needs PyTorch.
    """
    from services.catalog_store import save_products
    from services.encoding.package import register_pretrained

    registry = ModelRegistry(settings.registry_dir)
    card = register_pretrained(registry, model or settings.encoder.model, settings.encoder)
    save_products(list(products), settings.catalog_dir)
    index_products(settings, card.version, products, progress=progress).close()
    registry.set_production(card.version, actor=actor)
    logger.info(
        "bootstrapped %s: %s indexes %d products", settings.home, card.version, len(products)
    )
    return card.version


@dataclass(frozen=True, slots=True)
class Indexed:
    """What :func:`index_catalog` did."""

    version: str
    points: int
    production: str | None
    registered: str | None = None
    """The checkpoint registered as ``version`` first, if one was."""
    reindexed_from: str | None = None
    """The production whose model ``version`` copies, when a new catalog replaced its own."""


def index_catalog(
    settings: Settings,
    products: Sequence[Product] | None,
    *,
    model: str | None = None,
    progress: ProgressFn | None = None,
    actor: str | None = None,
) -> Indexed:
    """``flywheel index``: index a catalog without ever rebuilding an index that serves.

    - A new home: register ``model`` (default: the bundled one) as v1, index, make it
      production (:func:`bootstrap_home`).
    - A new catalog on a home that serves: a new version with production's model (its files
      copied, hash-checked) indexes it, then production switches to it atomically, only if
      production has not changed meanwhile. Refused while a canary runs (its index holds the
      old catalog): finish the canary first.
    - ``model`` a registered version that does not serve: (re)build its index, from
      ``products`` or the home's saved catalog; it may then be promoted or started as a canary.
    - ``model`` a checkpoint ('bundled', a path): register it as a new version and index it;
      nothing switches.
    """
    from services.catalog_store import load_products, save_products

    registry = ModelRegistry(settings.registry_dir)
    pointers = registry.pointers()
    if pointers.production is None:
        if products is None:
            raise RegistryError("A new home needs a catalog: pass --catalog FILE.")
        version = bootstrap_home(settings, products, model=model, progress=progress, actor=actor)
        return Indexed(version, len(products), version, registered=model or settings.encoder.model)
    if model is not None and model in registry.versions():
        catalog = list(products) if products is not None else load_products(settings.catalog_dir)
        points = _build(settings, model, catalog, progress)
        return Indexed(model, points, pointers.production)
    if model is not None:
        from services.encoding.package import register_pretrained

        if products is None:
            products = load_products(settings.catalog_dir)
        card = register_pretrained(registry, model, settings.encoder)
        points = _build(settings, card.version, products, progress)
        return Indexed(card.version, points, pointers.production, registered=model)
    if products is None:
        raise RegistryError(
            "Pass --catalog FILE to index a new catalog, or --model VERSION to build the index "
            "of a registered version from the saved catalog."
        )
    if pointers.canary is not None:
        raise RegistryError(
            f"Canary {pointers.canary} is running on the current catalog's index. Finish it "
            "first (`flywheel canary promote` or `flywheel canary rollback`), then index the "
            "new catalog."
        )
    production = pointers.production
    card = registry.derive(production, source=f"reindex:{production}")
    points = _build(settings, card.version, products, progress)
    registry.set_production(card.version, actor=actor, expect=Expected(production, None))
    save_products(list(products), settings.catalog_dir)
    logger.info("re-indexed the catalog as %s (model of %s)", card.version, production)
    return Indexed(card.version, points, card.version, reindexed_from=production)


def _build(
    settings: Settings, version: str, products: Sequence[Product], progress: ProgressFn | None
) -> int:
    index = index_products(settings, version, products, progress=progress)
    try:
        return index.count()
    finally:
        index.close()
