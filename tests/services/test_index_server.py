"""QdrantServerIndex lifecycle (local mode)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient

from services.errors import SearchIndexError
from services.index.server import QdrantServerIndex, collection_name
from services.products import Product
from services.settings import FilterKind
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
