"""The catalog guard: known-item queries made from the catalog's own titles, the gate's guard
when no labelled guard set is configured.

A known-item query takes a few words of one product's title, and that product is its one
relevant result (simulated known-item topics: Azzopardi, de Rijke & Balog, SIGIR 2007). No
human labels are needed, and shoppers' events cannot touch it: the catalog is the operator's.
It is blunter than human grades (it asks "can the model still find the product it is
describing?", not "is this the best product?"), which is what a guard needs: a candidate
fine-tuned on poisoned feedback (one product pushed for every query, clicks on products never
shown) or on drifted feedback forgets how to match titles, and loses here.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from services.evaluation.heldout import HeldOutSet
from services.products import Product

WORD = re.compile(r"[a-z0-9]+(?:[.'/-][a-z0-9]+)*")
MIN_WORDS, MAX_WORDS = 2, 4


def known_item_set(
    products: Sequence[Product], *, at_most: int, seed: int = 42, name: str = "catalog"
) -> HeldOutSet:
    """Up to ``at_most`` known-item queries: for each sampled product (titles of at least two
    words), 2-4 of its title words in title order; its qrels hold that product alone (grade 1).

    Sampling is seeded, so every candidate of a catalog is judged on the same queries.
    """
    if at_most < 1:
        raise ValueError(f"at_most={at_most}: ask for at least one known-item query.")
    rng = random.Random(seed)
    order = list(products)
    rng.shuffle(order)
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    for product in order:
        if len(queries) >= at_most:
            break
        title = str(product.payload.get("title") or product.text)
        words = WORD.findall(title.lower())
        if len(words) < MIN_WORDS:
            continue
        k = rng.randint(MIN_WORDS, min(MAX_WORDS, len(words)))
        picked = sorted(rng.sample(range(len(words)), k))
        qid = f"known-item-{product.id}"
        queries[qid] = " ".join(words[i] for i in picked)
        qrels[qid] = {product.id: 1}
    return HeldOutSet(f"{name}:known-item", queries, qrels)
