"""A generated home-improvement catalog, so the demo and tests run without any data files.

Products are built from categories, product types, attributes and brands; every product has
``brand``, ``category`` and ``price`` payload fields, so filters have something to act on.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from services.datasets.base import LabelledSet, Qrels
from services.products import Product

CATEGORIES: dict[str, list[str]] = {
    "tools": [
        "cordless drill",
        "impact driver",
        "circular saw",
        "hammer",
        "tape measure",
        "screwdriver set",
        "jigsaw",
        "angle grinder",
        "socket set",
        "utility knife",
    ],
    "paint": [
        "interior paint",
        "exterior paint",
        "paint roller",
        "paint brush",
        "primer",
        "wood stain",
        "spray paint",
        "painter's tape",
        "drop cloth",
        "caulk",
    ],
    "plumbing": [
        "kitchen faucet",
        "toilet",
        "shower head",
        "sink drain",
        "water heater",
        "pvc pipe",
        "ball valve",
        "garbage disposal",
        "bathroom faucet",
        "plunger",
    ],
    "electrical": [
        "led bulb",
        "light switch",
        "extension cord",
        "outlet",
        "ceiling fan",
        "circuit breaker",
        "wire connector",
        "motion sensor light",
        "dimmer",
        "doorbell",
    ],
    "garden": [
        "garden hose",
        "lawn mower",
        "leaf blower",
        "pruning shears",
        "planter",
        "potting soil",
        "sprinkler",
        "wheelbarrow",
        "string trimmer",
        "rake",
    ],
    "hardware": [
        "angle bracket",
        "wood screws",
        "door hinge",
        "cabinet knob",
        "deadbolt",
        "shelf bracket",
        "anchor bolts",
        "padlock",
        "hook",
        "drawer slide",
    ],
}
ATTRIBUTES = [
    "18-volt",
    "20-volt",
    "stainless steel",
    "brushed nickel",
    "white",
    "black",
    "heavy duty",
    "compact",
    "2-pack",
    "10 ft.",
    "1 gal.",
    "outdoor",
    "adjustable",
    "brass",
    "galvanized",
    "cordless",
    "oil-rubbed bronze",
    "matte",
    "waterproof",
]
BRANDS = [
    "DEWALT",
    "Milwaukee",
    "Ryobi",
    "BEHR",
    "Glidden",
    "Moen",
    "Delta",
    "Kohler",
    "Leviton",
    "Philips",
    "Husqvarna",
    "Scotts",
    "Everbilt",
    "Simpson Strong-Tie",
    "Husky",
    "GE",
]


def generate_catalog(n: int = 2000, seed: int = 7) -> list[Product]:
    """``n`` distinct products with titles like 'DEWALT 20-volt compact cordless drill'."""
    rng = random.Random(seed)
    products: list[Product] = []
    seen: set[str] = set()
    while len(products) < n:
        category = rng.choice(list(CATEGORIES))
        kind = rng.choice(CATEGORIES[category])
        brand = rng.choice(BRANDS)
        attrs = rng.sample(ATTRIBUTES, k=rng.randint(1, 3))
        title = f"{brand} {' '.join(attrs)} {kind}"
        if title in seen:
            continue
        seen.add(title)
        price = round(rng.lognormvariate(3.3, 0.9), 2)
        products.append(
            Product(
                id=str(100000 + len(products)),
                text=title,
                payload={
                    "title": title,
                    "brand": brand,
                    "category": category,
                    "product_type": kind,
                    "price": price,
                },
            )
        )
    return products


def write_catalog_jsonl(products: list[Product], path: Path) -> Path:
    """Write products as a JSONL catalog file (the format shop owners hand to `flywheel index`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for p in products:
            handle.write(json.dumps({"id": p.id, **p.payload}) + "\n")
    return path


def generate_labelled_set(products: list[Product]) -> LabelledSet:
    """Queries with graded relevance over a generated catalog: one query per product type
    ('cordless drill') and one per (attribute, type) pair that exists ('brass door hinge').

    Grades: 2 = matches the query (its type, and its attribute if the query has one), 1 = the
    type only (attribute queries), 0 = up to five products of each other type of the same
    category (judged irrelevant). Other products are unjudged.
    """
    by_type: dict[str, list[Product]] = {}
    for p in products:
        by_type.setdefault(str(p.payload["product_type"]), []).append(p)
    category_of = {kind: cat for cat, kinds in CATEGORIES.items() for kind in kinds}
    queries: dict[str, str] = {}
    qrels: Qrels = {}

    def add(text: str, kind: str, attribute: str | None) -> None:
        qid = f"syn-{len(queries)}"
        queries[qid] = text
        judged: dict[str, int] = {}
        for other in CATEGORIES[category_of[kind]]:
            if other != kind:
                for p in by_type.get(other, [])[:5]:
                    judged[p.id] = 0
        for p in by_type.get(kind, []):
            judged[p.id] = 2 if attribute is None or attribute in p.text else 1
        qrels[qid] = judged

    for kind in sorted(by_type):
        add(kind, kind, None)
        for attribute in ATTRIBUTES:
            if sum(attribute in p.text for p in by_type[kind]) >= 2:
                add(f"{attribute} {kind}", kind, attribute)
    return LabelledSet(
        name="synthetic", products=products, queries=queries, qrels=qrels, max_grade=2
    )


def write_qrels_dataset(labelled: LabelledSet, folder: Path) -> Path:
    """Write a labelled set in the generic layout `qrels:DIR` reads (corpus.jsonl, queries.tsv,
    qrels.tsv in TREC format)."""
    folder.mkdir(parents=True, exist_ok=True)
    write_catalog_jsonl(labelled.products, folder / "corpus.jsonl")
    (folder / "queries.tsv").write_text(
        "".join(f"{qid}\t{text}\n" for qid, text in labelled.queries.items()), encoding="utf-8"
    )
    (folder / "qrels.tsv").write_text(
        "".join(
            f"{qid} 0 {pid} {grade}\n"
            for qid, judged in labelled.qrels.items()
            for pid, grade in judged.items()
        ),
        encoding="utf-8",
    )
    return folder
