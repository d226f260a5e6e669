"""Encode a catalog with one model version and write that version's index."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from services.encoding.base import ProgressFn, SpladeEncoder
from services.index.base import ProductIndex
from services.index.bm25 import Bm25Encoder
from services.index.factory import create_index
from services.products import Product
from services.registry import ModelRegistry
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
) -> ProductIndex:
    """Build ``version``'s index over ``products`` (SPLADE and BM25 vectors) and return it open."""
    registry = ModelRegistry(settings.registry_dir)
    encoder = encoder or document_encoder(settings, registry, version)
    bm25 = Bm25Encoder.for_corpus(p.text for p in products)
    index = create_index(settings, version, overwrite=overwrite)
    texts = [p.text for p in products]
    for start in range(0, len(products), CHUNK):
        chunk = slice(start, start + CHUNK)
        splade = encoder.encode_documents(
            texts[chunk], batch_size=settings.encoder.batch_size, progress=progress
        )
        index.upsert(products[chunk], splade, bm25.encode_documents(texts[chunk]))
    index.finalize()
    logger.info("indexed %d products for %s", index.count(), version)
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
    save_products(list(products), settings.home)
    index_products(settings, card.version, products, progress=progress).close()
    registry.set_production(card.version, actor=actor)
    logger.info(
        "bootstrapped %s: %s indexes %d products", settings.home, card.version, len(products)
    )
    return card.version
