"""``flywheel index`` on a home that serves: a new catalog becomes a new version with
production's model, and production switches to it atomically; the serving index is never
rebuilt in place."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.catalog_store import load_products
from services.errors import RegistryError
from services.index.store import open_index
from services.indexing import index_catalog
from services.registry import ModelRegistry
from services.settings import Settings
from services.synthetic import generate_catalog


def test_a_new_catalog_becomes_a_new_version(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    registry = ModelRegistry(settings.registry_dir)
    first = index_catalog(settings, generate_catalog(30, seed=1), actor="test")
    assert (first.version, first.production, first.points) == ("v1", "v1", 30)
    # Something that looks like a running server: v1's index is open while we re-index.
    serving = open_index(settings, "v1")

    with pytest.raises(RegistryError, match="serves"):
        index_catalog(settings, generate_catalog(5, seed=2), model="v1")
    assert serving.count() == 30

    second = index_catalog(settings, generate_catalog(40, seed=2), actor="test")
    assert (second.version, second.production, second.reindexed_from) == ("v2", "v2", "v1")
    assert registry.pointers().production == "v2" and registry.pointers().history == ["v1"]
    assert serving.count() == 30  # the index that served was not touched
    serving.close()
    v2 = registry.card("v2")
    assert (v2.parent, v2.source, v2.gate) == ("v1", "reindex:v1", None)
    assert v2.files == registry.card("v1").files  # the same model, copied
    assert registry.events()[-1]["action"] == "set_production"
    assert len(load_products(settings.catalog_dir)) == 40  # later jobs index what production has

    index = open_index(settings, "v2")
    assert index.count() == 40
    index.close()
    # A canary runs on the current catalog: a new catalog waits until it is decided.
    registry.set_canary("v1", 0.5)
    with pytest.raises(RegistryError, match="Canary v1 is running"):
        index_catalog(settings, generate_catalog(10, seed=3))
    assert registry.pointers().production == "v2"
    registry.clear_canary()
    # v1 is a rollback target: rebuilding it would change what a rollback serves.
    with pytest.raises(RegistryError, match="a rollback target"):
        index_catalog(settings, generate_catalog(10, seed=3), model="v1")
