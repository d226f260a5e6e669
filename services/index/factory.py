"""Pick the index backend from settings: Qdrant Edge on disk unless a server URL is set."""

from __future__ import annotations

import math

from qdrant_client import QdrantClient

from services.index.base import ProductIndex
from services.index.edge import EdgeIndex
from services.index.server import QdrantServerIndex
from services.settings import Settings


def server_client(settings: Settings) -> QdrantClient:
    """A client for the configured Qdrant server (requires ``settings.qdrant.url``)."""
    qdrant = settings.qdrant
    api_key = qdrant.api_key.get_secret_value() if qdrant.api_key else None
    return QdrantClient(url=qdrant.url, api_key=api_key, timeout=math.ceil(qdrant.timeout_s))


def open_index(settings: Settings, version: str) -> ProductIndex:
    """The existing index of ``version`` (raises ``SearchIndexError`` if absent)."""
    if settings.qdrant.url is None:
        return EdgeIndex.open(settings.index_dir / version, version)
    return QdrantServerIndex.open(
        server_client(settings), settings.qdrant.collection_prefix, version
    )


def create_index(settings: Settings, version: str, *, overwrite: bool = False) -> ProductIndex:
    """A new, empty index of ``version`` with payload indexes for the filter fields."""
    fields = settings.search.filter_fields
    if settings.qdrant.url is None:
        return EdgeIndex.create(settings.index_dir / version, version, fields, overwrite=overwrite)
    qdrant = settings.qdrant
    return QdrantServerIndex.create(
        server_client(settings),
        qdrant.collection_prefix,
        version,
        fields,
        shard_number=qdrant.shard_number,
        replication_factor=qdrant.replication_factor,
        overwrite=overwrite,
    )
