"""Private working copies for a retraining run: indexes the gate may read without touching
the ones a running encoder_server holds open."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from services.encoding.base import SpladeEncoder
from services.index.base import ProductIndex
from services.index.store import open_index
from services.indexing import index_products
from services.products import Product
from services.settings import QdrantSettings, Settings


def readable_index(settings: Settings, version: str, scratch: Path) -> ProductIndex:
    """``version``'s index, opened without contending with the server.

    A Qdrant Edge shard takes one handle at a time and a serving shard is never written after
    it is built, so the run opens a copy; a Qdrant server collection is opened directly.
    Either is checked complete and this home's, as a server checks what it serves.
    """
    return open_index(settings, version, scratch=scratch)


def index_reader(
    settings: Settings, scratch: Path
) -> Callable[[str], AbstractContextManager[ProductIndex]]:
    """An opener of versions' indexes for reading (:func:`readable_index`, closed and its copy
    removed on exit): what :class:`~services.evaluation.heldout.HeldOutEvaluator` takes."""

    @contextmanager
    def open_version(version: str) -> Iterator[ProductIndex]:
        scratch.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=scratch) as tmp:
            index = readable_index(settings, version, Path(tmp))
            try:
                yield index
            finally:
                index.close()

    return open_version


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
    return index_products(local, name, products, encoder=encoder, record=False)
