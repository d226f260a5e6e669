"""QdrantServerIndex lifecycle (local mode) and the backend factory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient

from services.errors import SearchIndexError
from services.index import factory
from services.index.edge import EdgeIndex
from services.index.server import QdrantServerIndex, collection_name
from services.products import Product
from services.settings import FilterKind, QdrantSettings, Settings
from services.sparse import SparseVec

FIELDS: dict[str, FilterKind] = {"brand": "keyword", "price": "range"}


def products(n: int) -> tuple[list[Product], list[SparseVec], list[SparseVec]]:
    rng = np.random.default_rng(1)
    items = [Product(f"p{i}", f"t{i}", {"brand": "acme", "price": float(i)}) for i in range(n)]
    vecs = [
        SparseVec(np.array([i, 1000 + i], np.int32), rng.uniform(0.1, 1, 2).astype(np.float32))
        for i in range(n)
    ]
    return items, vecs, vecs


def test_create_open_alias_drop() -> None:
    client = QdrantClient(location=":memory:")
    v1 = QdrantServerIndex.create(client, "products", "v1", FIELDS)
    v2 = QdrantServerIndex.create(client, "products", "v2", FIELDS)
    assert v1.collection == collection_name("products", "v1") == "products__v1"
    v1.upsert(*products(5))
    assert QdrantServerIndex.open(client, "products", "v1").count() == 5

    v1.set_alias("products")
    assert client.count("products").count == 5
    v1.set_alias("products", "v2")  # moves the alias atomically
    assert client.count("products").count == 0
    aliases = {a.alias_name: a.collection_name for a in client.get_aliases().aliases}
    assert aliases == {"products": "products__v2"}

    with pytest.raises(SearchIndexError, match="already exists"):
        QdrantServerIndex.create(client, "products", "v1", FIELDS)
    fresh = QdrantServerIndex.create(client, "products", "v1", FIELDS, overwrite=True)
    assert fresh.count() == 0
    v2.drop()
    with pytest.raises(SearchIndexError, match=r"flywheel index --catalog FILE"):
        QdrantServerIndex.open(client, "products", "v2")


def test_local_mode_on_disk_persists(tmp_path: Path) -> None:
    client = QdrantClient(path=str(tmp_path / "q"))
    index = QdrantServerIndex.create(client, "products", "v1", FIELDS)
    items, splade, bm25 = products(3)
    index.upsert(items, splade, bm25)
    expected = index.search(splade[0])
    index.close()
    reopened = QdrantServerIndex.open(QdrantClient(path=str(tmp_path / "q")), "products", "v1")
    assert reopened.search(splade[0]) == expected
    assert expected[0].product_id == "p0"
    assert expected[0].payload == {"brand": "acme", "price": 0.0}
    reopened.close()


def test_factory_uses_edge_without_url(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    created = factory.create_index(settings, "v1")
    assert isinstance(created, EdgeIndex)
    assert created.path == settings.index_dir / "v1"
    created.upsert(*products(4))
    created.finalize()
    created.close()
    opened = factory.open_index(settings, "v1")
    assert opened.count() == 4
    opened.close()
    with pytest.raises(SearchIndexError):
        factory.create_index(settings, "v1")
    with pytest.raises(SearchIndexError, match="flywheel index"):
        factory.open_index(settings, "v2")


def test_factory_uses_server_with_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    client = QdrantClient(location=":memory:")
    monkeypatch.setattr(factory, "server_client", lambda settings: client)
    qdrant = QdrantSettings(url="http://qdrant:6333", collection_prefix="shop", shard_number=2)
    settings = Settings(home=tmp_path, qdrant=qdrant)
    created = factory.create_index(settings, "v3")
    assert isinstance(created, QdrantServerIndex)
    assert created.collection == "shop__v3"
    assert factory.open_index(settings, "v3").count() == 0


def test_server_client_passes_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setattr(factory, "QdrantClient", lambda **kwargs: seen.update(kwargs))
    settings = Settings(qdrant=QdrantSettings(url="https://q:6333", api_key="k", timeout_s=2.5))
    factory.server_client(settings)
    assert seen == {"url": "https://q:6333", "api_key": "k", "timeout": 3}
