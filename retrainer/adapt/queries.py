"""Offline query generation from the catalog itself: (query, product) pairs without labels.

doc2query (Nogueira et al., 2019, "Document Expansion by Query Prediction") and its
successors InPars (Bonifacio et al., 2022), Promptagator (Dai et al., 2022) and GPL (Wang et
al., 2022) adapt a retriever to a corpus by generating queries for its documents. Product
titles need no language model for a first version: shoppers type a few words of what a
product *is*, its head noun phrase, which in English titles closes the first clause ("Delta
Vero 1-Handle Shower Only Faucet Trim Kit | in Chrome (Valve Not Included)" gives "faucet trim
kit"), often with a brand. Three kinds of query, drawn with a seeded generator:

* ``head``: 1-3 words ending at one of the last two words of the title's first clause;
* ``span``: 2-4 consecutive title words anywhere (attributes, model lines);
* ``brand``: the brand (payload ``brand``, else the title's first word when capitalised) and
  the product type (payload ``product_type``, else a 1-2-word head).

A query never starts or ends with a stop word, a unit or a pure number, and never equals the
whole title (a verbatim title teaches copying, not matching). The same products, count and
seed give the same pairs.
"""

from __future__ import annotations

import html
import random
import re
from collections.abc import Sequence, Set
from typing import NamedTuple, TypeVar

from services.datasets.protocol import normalise_query
from services.products import Product

T = TypeVar("T")
MAX_WORDS = 4
STOP_WORDS = frozenset(
    "a an and are as at be by for from in into is it of on or the to with without x "  # noqa: SIM905
    "per each pack pc pcs".split()
)
UNITS = frozenset("in ft cu lb lbs oz gal mm cm m sq yd qt pt v w a amp watt volt".split())  # noqa: SIM905
BOUNDARY_WORDS = frozenset({"in", "with", "for", "-", "–", "—", "|", "by", "featuring"})
"""A token (as written, lowercased) that starts a new clause: 'in' but not the unit 'in.'."""
NUMBER = re.compile(r"^[#$]?[\d.,/:x-]+%?$")
EDGE_PUNCTUATION = "\"'.,;:!?()[]{}*#®™"
SECOND_TO_LAST = 0.15
"""Share of head queries ending one word early (the head noun is usually last)."""
HEAD_LENGTHS = ((1, 0.25), (2, 0.45), (3, 0.30))
KINDS = (("head", 0.55), ("span", 0.2), ("brand", 0.25))
ATTEMPTS = 4


class QueryPair(NamedTuple):
    """One generated query and the product it was made from (its one positive)."""

    query: str
    product_id: str
    kind: str


def title_of(product: Product) -> str:
    """The title (payload ``title``, else the product text), HTML entities decoded."""
    return html.unescape(str(product.payload.get("title") or product.text))


def _clean(token: str) -> str:
    return token.strip(EDGE_PUNCTUATION).lower()


def _is_edge_ok(word: str) -> bool:
    return bool(word) and word not in STOP_WORDS and word not in UNITS and not NUMBER.match(word)


def first_clause(title: str) -> list[str]:
    """The title's words (cleaned) up to its first clause boundary: a comma, an opening
    parenthesis, a dash or one of :data:`BOUNDARY_WORDS`, once two words are in."""
    words: list[str] = []
    for raw in title.split():
        if len(words) >= 2 and (raw.startswith("(") or raw.lower() in BOUNDARY_WORDS):
            break
        word = _clean(raw)
        if word:
            words.append(word)
        if len(words) >= 2 and raw.endswith(","):
            break
    return words


def trim(words: Sequence[str]) -> list[str]:
    """``words`` without stop words, units and numbers at either end."""
    out = list(words)
    while out and not _is_edge_ok(out[0]):
        out.pop(0)
    while out and not _is_edge_ok(out[-1]):
        out.pop()
    return out


def _weighted(rng: random.Random, options: Sequence[tuple[T, float]]) -> T:
    return rng.choices([o[0] for o in options], weights=[o[1] for o in options])[0]


def head_query(title: str, rng: random.Random, *, max_len: int = 3) -> list[str]:
    """1 to ``max_len`` words ending at the last or second-to-last word of the first clause."""
    clause = first_clause(title)
    if not clause:
        return []
    end = len(clause) - 1 - (rng.random() < SECOND_TO_LAST and len(clause) > 1)
    length = min(_weighted(rng, [o for o in HEAD_LENGTHS if o[0] <= max_len]), end + 1)
    return trim(clause[end - length + 1 : end + 1])


def span_query(title: str, rng: random.Random) -> list[str]:
    """2-4 consecutive title words anywhere."""
    words = [w for w in (_clean(t) for t in title.split()) if w]
    if len(words) < 2:
        return []
    length = rng.randint(2, min(MAX_WORDS, len(words)))
    start = rng.randrange(len(words) - length + 1)
    return trim(words[start : start + length])


def brand_of(product: Product) -> str | None:
    """Payload ``brand``, else the title's first word when it is capitalised and not a stop
    word (most catalogs start titles with the brand: 'Moen', 'DEWALT', 'Whirlpool')."""
    brand = product.payload.get("brand")
    if isinstance(brand, str) and brand.strip():
        return normalise_query(brand)
    tokens = title_of(product).split()
    if len(tokens) >= 3 and tokens[0][:1].isupper():
        first = _clean(tokens[0])
        if first.isalpha() and _is_edge_ok(first):
            return first
    return None


def brand_query(product: Product, rng: random.Random) -> list[str]:
    """Brand and product type ('moen kitchen faucet'); empty when the brand is unknown."""
    brand = brand_of(product)
    if brand is None:
        return []
    kind = product.payload.get("product_type")
    head = normalise_query(kind).split() if isinstance(kind, str) and kind.strip() else []
    head = head or head_query(title_of(product), rng, max_len=2)
    head = [w for w in head if w not in brand.split()]
    return [*brand.split(), *head] if head else []


def product_query(product: Product, rng: random.Random) -> tuple[str, str] | None:
    """One (query, kind) for ``product``, or None when its title yields none."""
    full = normalise_query(title_of(product))
    for _ in range(ATTEMPTS):
        kind = _weighted(rng, KINDS)
        if kind == "head":
            words = head_query(title_of(product), rng)
        elif kind == "span":
            words = span_query(title_of(product), rng)
        else:
            words = brand_query(product, rng)
        query = " ".join(words[:MAX_WORDS])
        if query and query != full and any(c.isalpha() for c in query):
            return query, kind
    return None


def generate_pairs(
    products: Sequence[Product],
    n_pairs: int,
    *,
    seed: int,
    exclude_queries: Set[str] = frozenset(),
    max_per_product: int = 5,
) -> list[QueryPair]:
    """Up to ``n_pairs`` distinct (query, product) pairs: the products in a seeded order, one
    query each per round, for at most ``max_per_product`` rounds (a small catalog gives
    several queries per product, a large one a sample of its products). Queries whose
    normalised text is in ``exclude_queries`` (the gate's) are never produced."""
    rng = random.Random(seed)
    order = list(products)
    rng.shuffle(order)
    excluded = {normalise_query(q) for q in exclude_queries}
    pairs: list[QueryPair] = []
    seen: set[tuple[str, str]] = set()
    for _round in range(max_per_product):
        before = len(pairs)
        for product in order:
            if len(pairs) >= n_pairs:
                return pairs
            made = product_query(product, rng)
            if made is None or made[0] in excluded or (made[0], product.id) in seen:
                continue
            seen.add((made[0], product.id))
            pairs.append(QueryPair(made[0], product.id, made[1]))
        if len(pairs) == before:
            break
    return pairs
