"""The common shape every labelled-data adapter returns."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from services.errors import DatasetError
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

    def restrict(self, qids: Iterable[str], *, name: str | None = None) -> LabelledSet:
        """The same set limited to the queries ``qids`` (and their judgments); the products
        stay, since the corpus of an evaluation is every product, judged or not.

        Raises:
            DatasetError: an id is not a query of this set.
        """
        wanted = list(dict.fromkeys(qids))
        unknown = [q for q in wanted if q not in self.queries]
        if unknown:
            raise DatasetError(
                f"{len(unknown)} query ids are not in {self.name}, e.g. {unknown[0]!r}; restrict "
                "to ids of its queries."
            )
        return LabelledSet(
            name=name or self.name,
            products=self.products,
            queries={q: self.queries[q] for q in wanted},
            qrels={q: self.qrels[q] for q in wanted if q in self.qrels},
            max_grade=self.max_grade,
            notes=dict(self.notes),
        )
