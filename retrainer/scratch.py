"""Private working copies for a retraining run: indexes the gate may read without touching
the ones a running encoder_server holds open."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from services.encoding.base import SpladeEncoder
from services.index.base import ProductIndex
from services.index.edge import EdgeIndex
from services.index.factory import open_index
from services.indexing import index_products
from services.products import Product
from services.settings import QdrantSettings, Settings


def readable_index(settings: Settings, version: str, scratch: Path) -> ProductIndex:
    """``version``'s index, opened without contending with the server.

    A Qdrant Edge shard takes one handle at a time and a serving shard is never written after
    it is built, so the run opens a copy; a Qdrant server collection is opened directly.
    """
    if settings.qdrant.url is not None:
        return open_index(settings, version)
    copy = scratch / "indexes" / version
    shutil.copytree(settings.index_dir / version, copy, dirs_exist_ok=False)
    return EdgeIndex.open(copy, version)


def scratch_index(
    settings: Settings,
    scratch: Path,
    name: str,
    products: Sequence[Product],
    encoder: SpladeEncoder,
) -> ProductIndex:
    """A throw-away Qdrant Edge index of ``products`` (e.g. a labelled guard corpus)."""
    local = Settings(
        home=scratch / name,
        qdrant=QdrantSettings(),
        encoder=settings.encoder,
        search=settings.search,
    )
    return index_products(local, name, products, encoder=encoder)
