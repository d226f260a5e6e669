"""Fixtures shared across the suite: a Flywheel home with the bundled model indexed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from services.indexing import bootstrap_home
from services.products import Product
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
    settings = Settings(home=tmp_path_factory.mktemp("flywheel-home"))
    products = generate_catalog(400, seed=3)
    version = bootstrap_home(settings, products, model="bundled")
    return IndexedHome(settings=settings, products=products, version=version)
