"""A generated home-improvement catalog, so the demo and tests run without any data files.

Products are built from categories, product types, attributes and brands; every product has
``brand``, ``category`` and ``price`` payload fields, so filters have something to act on.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

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
