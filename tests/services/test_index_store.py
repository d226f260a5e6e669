"""The index store: one interface over Qdrant Edge and a Qdrant server (qdrant-client local
mode), the completion stamp a version needs before it can serve, garbage collection that
leaves no orphan index, and reconcile."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient

from services.encoding.base import ProgressFn
from services.errors import RegistryError, SearchIndexError
from services.index import store as store_module
from services.index.edge import STAMP, EdgeIndex
from services.index.server import QdrantServerIndex
from services.index.store import index_store, open_index, opened_store, reconcile
from services.indexing import index_products
from services.products import Product
from services.registry import ModelRegistry
from services.settings import QdrantSettings, Settings
from services.sparse import SparseVec
from tests.services.test_registry import publish_dummy


class WordHashEncoder:
    """A stand-in SPLADE encoder: one term per word, hashed (no model needed)."""

    def encode_query(self, text: str) -> SparseVec:
        return self.encode_documents([text])[0]

    def encode_documents(
        self, texts: Sequence[str], *, batch_size: int = 64, progress: ProgressFn | None = None
    ) -> list[SparseVec]:
        vectors = []
        for text in texts:
            ids = sorted({zlib.crc32(w.encode()) % 30_000 for w in text.lower().split()})
            vectors.append(SparseVec(np.array(ids, np.int32), np.ones(len(ids), np.float32)))
        if progress is not None:
            progress(len(texts))
        return vectors


CATALOG = [Product(f"p{i}", f"cordless drill model {i}", {"brand": "acme"}) for i in range(12)]


def build(settings: Settings, version: str, products: list[Product] = CATALOG) -> None:
    index_products(settings, version, products, encoder=WordHashEncoder()).close()


@pytest.fixture(params=["edge", "server"])
def settings(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """A home on Qdrant Edge, or on a Qdrant server (qdrant-client local mode, shared by
    every client the store makes, as one server is)."""
    if request.param == "edge":
        return Settings(home=tmp_path / "home")
    server = QdrantClient(location=":memory:")
    monkeypatch.setattr(store_module, "server_client", lambda _settings: Unclosable(server))
    qdrant = QdrantSettings(url="http://qdrant:6333", collection_prefix="shop")
    return Settings(home=tmp_path / "home", qdrant=qdrant)


class Unclosable:
    """The shared in-memory server: an index's close() must not wipe it for the others."""

    def __init__(self, client: QdrantClient) -> None:
        self._client = client

    def close(self) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def registry_of(settings: Settings, versions: int) -> ModelRegistry:
    registry = ModelRegistry(settings.registry_dir)
    for _ in range(versions):
        publish_dummy(registry, servable=False)
    return registry


def test_store_matches_the_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    edge = index_store(Settings(home=tmp_path))
    assert type(edge).__name__ == "EdgeStore"
    seen: dict[str, Any] = {}
    monkeypatch.setattr(store_module, "QdrantClient", lambda **kwargs: seen.update(kwargs))
    settings = Settings(qdrant=QdrantSettings(url="https://q:6333", api_key="k", timeout_s=2.5))
    assert type(index_store(settings)).__name__ == "ServerStore"
    assert seen == {"url": "https://q:6333", "api_key": "k", "timeout": 3}


def test_a_complete_index_opens_with_its_stamp(settings: Settings) -> None:
    registry = registry_of(settings, 1)
    build(settings, "v1")
    record = registry.index_record("v1")
    assert record is not None and record.points == len(CATALOG)
    assert record.model_hash == registry.card("v1").model_hash()
    index = open_index(settings, "v1")
    stamp = index.read_stamp()
    assert stamp is not None and stamp.complete
    assert (stamp.registry_id, stamp.points) == (registry.registry_id(), len(CATALOG))
    assert isinstance(index, EdgeIndex if settings.qdrant.url is None else QdrantServerIndex)
    assert index.count() == len(CATALOG)
    index.close()
    registry.set_production("v1")


def test_a_half_built_index_never_serves(settings: Settings) -> None:
    """The build died after storing some products: no record, so neither a pointer nor a
    server takes it."""
    registry = registry_of(settings, 1)
    with opened_store(settings) as store:
        index = store.create("v1", registry.registry_id())
        index.upsert(
            CATALOG[:5], *[WordHashEncoder().encode_documents([p.text for p in CATALOG[:5]])] * 2
        )
        index.close()
    with pytest.raises(SearchIndexError, match="not complete"):
        open_index(settings, "v1")
    with pytest.raises(RegistryError, match="no complete search index"):
        registry.set_production("v1")
    assert registry.pointers().production is None


def test_an_index_changed_or_built_for_another_model_is_refused(settings: Settings) -> None:
    registry = registry_of(settings, 1)
    build(settings, "v1")
    index = open_index(settings, "v1")
    index.upsert(CATALOG[:1], *[[SparseVec(np.array([1], np.int32), np.ones(1, np.float32))]] * 2)
    index.upsert(
        [Product("extra", "extra", {})],
        *[[SparseVec(np.array([1], np.int32), np.ones(1, np.float32))]] * 2,
    )
    index.close()
    with pytest.raises(SearchIndexError, match="holds 13 products but was completed with 12"):
        open_index(settings, "v1")
    build(settings, "v1")
    record = registry.index_record("v1")
    assert record is not None
    # The registry now says another model hash (as if v1's files were replaced).
    path = registry.root / "indexes" / "v1.json"
    path.write_text(record.model_copy(update={"model_hash": "0" * 64}).model_dump_json())
    with pytest.raises(SearchIndexError, match="model hash differs"):
        open_index(settings, "v1")


def test_two_homes_sharing_a_server_never_cross(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = QdrantClient(location=":memory:")
    monkeypatch.setattr(store_module, "server_client", lambda _settings: Unclosable(server))
    qdrant = QdrantSettings(url="http://qdrant:6333", collection_prefix="shop")
    home_a = Settings(home=tmp_path / "a", qdrant=qdrant)
    home_b = Settings(home=tmp_path / "b", qdrant=qdrant)
    registry_of(home_a, 1)
    registry_b = registry_of(home_b, 1)
    build(home_a, "v1")
    # Home B has its own v1 but never built its index; the collection shop__v1 is A's.
    registry_b.record_index("v1", len(CATALOG))
    with pytest.raises(SearchIndexError, match="not built by this home's registry"):
        open_index(home_b, "v1")
    found = reconcile(home_b)
    assert (found.dropped, found.foreign) == ([], ["v1"])
    assert open_index(home_a, "v1").count() == len(CATALOG)  # B's reconcile left A's alone


def test_a_serving_index_is_never_rebuilt_in_place(settings: Settings) -> None:
    registry = registry_of(settings, 2)
    build(settings, "v1")
    registry.set_production("v1")
    with pytest.raises(RegistryError, match=r"serves \(production\); its index cannot be rebuilt"):
        build(settings, "v1", CATALOG[:3])
    index = open_index(settings, "v1")
    assert index.count() == len(CATALOG)
    index.close()


def test_gc_and_reconcile_leave_no_orphan_index(settings: Settings) -> None:
    """Garbage collection drops the indexes of the versions it deletes on either backend;
    reconcile drops those whose version went while the drop failed."""
    registry = registry_of(settings, 5)
    for version in registry.versions():
        build(settings, version)
    registry.set_production("v5")
    with opened_store(settings) as store:
        assert sorted(store.stamps()) == ["v1", "v2", "v3", "v4", "v5"]
        deleted = registry.garbage_collect(2, store.drop)
    assert deleted == ["v1", "v2", "v3"]
    with opened_store(settings) as store:
        assert sorted(store.stamps()) == ["v4", "v5"]
    assert registry.index_record("v1") is None

    def broken(version: str) -> None:
        raise SearchIndexError("server unreachable")

    assert registry.garbage_collect(1, broken) == ["v4"]  # logged, not fatal
    with opened_store(settings) as store:
        assert sorted(store.stamps()) == ["v4", "v5"]  # v4's index is now an orphan
    assert reconcile(settings, dry_run=True).dropped == ["v4"]
    assert reconcile(settings).dropped == ["v4"]
    with opened_store(settings) as store:
        assert sorted(store.stamps()) == ["v5"]
    index = open_index(settings, "v5")
    assert index.count() == len(CATALOG)
    index.close()


def test_edge_stamp_of_a_dead_build_does_not_survive(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    folder = settings.index_dir / "v1"
    folder.mkdir(parents=True)
    (folder / STAMP).write_text(
        '{"version": "v1", "registry_id": "x", "model_hash": "h", "points": 0}'
    )
    registry = registry_of(settings, 1)
    with opened_store(settings) as store:
        index = store.create("v1", registry.registry_id())
        stamp = index.read_stamp()
        index.close()
    assert stamp is not None and not stamp.complete


def test_indexes_built_before_stamps_are_adopted_once(settings: Settings) -> None:
    """An upgraded home: its serving index has no stamp and no record. The server refuses it
    with a message naming the fix; `reconcile --adopt` stamps and records it as it is."""
    registry = registry_of(settings, 1)
    build(settings, "v1")
    registry.set_production("v1")
    (registry.root / "indexes" / "v1.json").unlink()  # as before stamps existed
    if settings.qdrant.url is None:
        (settings.index_dir / "v1" / STAMP).unlink()
    else:
        with opened_store(settings) as store:
            assert isinstance(store, store_module.ServerStore)
            store.client.update_collection("shop__v1", metadata={"flywheel": None})
    with pytest.raises(SearchIndexError, match="reconcile --adopt"):
        open_index(settings, "v1")
    assert reconcile(settings).unstamped == ["v1"]
    assert reconcile(settings, adopt=True, dry_run=True).adopted == ["v1"]
    assert registry.index_record("v1") is None
    found = reconcile(settings, adopt=True)
    assert (found.adopted, found.unstamped, found.dropped) == (["v1"], [], [])
    index = open_index(settings, "v1")
    assert index.count() == len(CATALOG)
    index.close()
