"""Shared set-up for the benchmarks: the data (the Home Depot titles and queries when present,
else a generated catalog, so every benchmark runs anywhere and says which data it used) and
the machine line every printed figure carries."""

from __future__ import annotations

import os
import platform
import random
from pathlib import Path

from services.products import Product
from services.synthetic import CATEGORIES, generate_catalog

HOMEDEPOT_CSV = (
    Path(__file__).resolve().parents[1].parent / "shared" / "data" / "homedepot" / "train.csv"
)


def bench_data(
    n_generated: int = 20000, *, generated: bool = False
) -> tuple[str, list[Product], list[str]]:
    """(name, products, queries) for benchmarking; ``generated`` skips Home Depot (smoke runs)."""
    if HOMEDEPOT_CSV.is_file() and not generated:
        from services.datasets.homedepot import load_homedepot

        labelled = load_homedepot(HOMEDEPOT_CSV)
        queries = sorted(labelled.queries.values())
        random.Random(0).shuffle(queries)
        return "homedepot", labelled.products, queries
    products = generate_catalog(n_generated)
    kinds = [kind for kinds in CATEGORIES.values() for kind in kinds]
    return "generated", products, kinds * 20


def machine() -> str:
    """The cores this process may use (and the machine's), for the line above every figure."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"cores: {usable} usable of {os.cpu_count()} ({platform.processor() or platform.machine()})"
    )
