"""Fixtures shared across the suite: a Flywheel home with the bundled model indexed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from services.encoding.package import register_pretrained
from services.indexing import index_products
from services.products import Product
from services.registry import ModelRegistry
from services.settings import Settings
from services.synthetic import generate_catalog

pytest_plugins = ["tests.integration.kafka_fixtures"]  # broker, kafka_settings, kafka_topic

HOMEDEPOT_CSV = (
    Path(__file__).resolve().parents[1].parent / "shared" / "data" / "homedepot" / "train.csv"
)


@dataclass(frozen=True)
class IndexedHome:
    """A FLYWHEEL_HOME with v1 (the bundled model) registered, indexed and in production."""

    settings: Settings
    products: list[Product]
    version: str


@pytest.fixture(scope="session")
def indexed_home(tmp_path_factory: pytest.TempPathFactory) -> IndexedHome:
    home = tmp_path_factory.mktemp("flywheel-home")
    settings = Settings(home=home)
    registry = ModelRegistry(settings.registry_dir)
    card = register_pretrained(registry, "bundled", settings.encoder)
    products = generate_catalog(400, seed=3)
    index_products(settings, card.version, products).close()
    registry.set_production(card.version)
    return IndexedHome(settings=settings, products=products, version=card.version)
