"""Parse ``filter=FIELD:VALUE`` and ``filter=FIELD:LOW..HIGH`` query parameters."""

from __future__ import annotations

import math
from collections.abc import Sequence

from services.errors import QueryError
from services.index.base import SearchFilters
from services.settings import FilterKind

MAX_FILTERS = 32


def _bound(text: str, spec: str) -> float | None:
    if text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        raise QueryError(
            f"Malformed range in filter {spec!r}: {text!r} is not a number. "
            "Use FIELD:LOW..HIGH, e.g. price:10..50, price:..50 or price:10.."
        ) from None
    if not math.isfinite(value):
        raise QueryError(f"Malformed range in filter {spec!r}: bounds must be finite numbers.")
    return value


def parse_filters(specs: Sequence[str], fields: dict[str, FilterKind]) -> SearchFilters:
    """Turn the ``filter`` parameters into :class:`SearchFilters`.

    Values of one keyword field are alternatives (any of); different fields must all match.
    """
    if len(specs) > MAX_FILTERS:
        raise QueryError(f"Too many filters ({len(specs)}); at most {MAX_FILTERS} are allowed.")
    keywords: dict[str, list[str]] = {}
    ranges: dict[str, tuple[float | None, float | None]] = {}
    allowed = ", ".join(sorted(fields)) or "none"
    for spec in specs:
        field, sep, value = spec.partition(":")
        field = field.strip()
        if not sep or not field:
            raise QueryError(f"Malformed filter {spec!r}: use FIELD:VALUE or FIELD:LOW..HIGH.")
        kind = fields.get(field)
        if kind is None:
            raise QueryError(f"Unknown filter field {field!r}; filterable fields: {allowed}.")
        if kind == "keyword":
            if not value.strip():
                raise QueryError(f"Filter {spec!r} has an empty value.")
            keywords.setdefault(field, []).append(value.strip())
            continue
        low_text, dots, high_text = value.partition("..")
        if not dots:
            raise QueryError(
                f"Malformed range in filter {spec!r}: use {field}:LOW..HIGH "
                "(either end may be empty)."
            )
        low, high = _bound(low_text.strip(), spec), _bound(high_text.strip(), spec)
        if low is None and high is None:
            raise QueryError(f"Range filter {spec!r} needs at least one bound.")
        if low is not None and high is not None and low > high:
            raise QueryError(f"Range filter {spec!r} has its low bound above its high bound.")
        if field in ranges:
            raise QueryError(f"Range field {field!r} is given twice; give one range.")
        ranges[field] = (low, high)
    return SearchFilters({k: tuple(v) for k, v in keywords.items()}, ranges)
