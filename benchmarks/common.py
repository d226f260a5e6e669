"""Shared set-up for the benchmarks: the Home Depot titles and queries when present, else a
generated catalog, so every benchmark runs anywhere and says which data it used."""

from __future__ import annotations

import random
from pathlib import Path

from services.products import Product
from services.synthetic import CATEGORIES, generate_catalog

HOMEDEPOT_CSV = (
    Path(__file__).resolve().parents[1].parent / "shared" / "data" / "homedepot" / "train.csv"
)


def bench_data(n_generated: int = 20000) -> tuple[str, list[Product], list[str]]:
    """(name, products, queries) for benchmarking."""
    if HOMEDEPOT_CSV.is_file():
        from services.datasets.homedepot import load_homedepot

        labelled = load_homedepot(HOMEDEPOT_CSV)
        queries = sorted(labelled.queries.values())
        random.Random(0).shuffle(queries)
        return "homedepot", labelled.products, queries
    products = generate_catalog(n_generated)
    kinds = [kind for kinds in CATEGORIES.values() for kind in kinds]
    return "generated", products, kinds * 20
