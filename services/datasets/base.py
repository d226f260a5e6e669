"""The common shape every labelled-data adapter returns."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.products import Product

Qrels = dict[str, dict[str, int]]
"""query id -> product id -> graded relevance (0 = irrelevant, higher is better)."""


@dataclass(slots=True)
class LabelledSet:
    """Products, queries and graded judgments of one labelled data set.

    ``queries`` maps query id to query text; ``qrels`` uses the same query ids and the
    products' ids. Grades are small non-negative integers so that nDCG gains are comparable
    across sets (Home Depot 0..6, ESCI 0..3, WANDS 0..2).
    """

    name: str
    products: list[Product]
    queries: dict[str, str]
    qrels: Qrels
    max_grade: int
    notes: dict[str, str] = field(default_factory=dict)
