"""Parsing of filter=FIELD:VALUE and filter=FIELD:LOW..HIGH."""

from __future__ import annotations

import pytest

from encoder_server.query_filters import parse_filters
from services.errors import QueryError
from services.settings import FilterKind

FIELDS: dict[str, FilterKind] = {"brand": "keyword", "category": "keyword", "price": "range"}


def test_keyword_values_of_one_field_are_alternatives() -> None:
    filters = parse_filters(["brand:DEWALT", "brand: Ryobi ", "category:tools"], FIELDS)
    assert filters.keywords == {"brand": ("DEWALT", "Ryobi"), "category": ("tools",)}
    assert filters.ranges == {}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("price:10..50", (10.0, 50.0)),
        ("price:..50", (None, 50.0)),
        ("price:10..", (10.0, None)),
        ("price:0.5..0.5", (0.5, 0.5)),
    ],
)
def test_ranges_with_open_ends(spec: str, expected: tuple[float | None, float | None]) -> None:
    assert parse_filters([spec], FIELDS).ranges == {"price": expected}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("color:red", "Unknown filter field 'color'; filterable fields: brand, category, price"),
        ("brand", "Malformed filter"),
        (":x", "Malformed filter"),
        ("brand:  ", "empty value"),
        ("price:10", "use price:LOW..HIGH"),
        ("price:ten..20", "'ten' is not a number"),
        ("price:..", "at least one bound"),
        ("price:50..10", "low bound above its high bound"),
        ("price:nan..1", "finite"),
    ],
)
def test_bad_filters_say_what_to_fix(spec: str, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        parse_filters([spec], FIELDS)


def test_a_range_field_given_twice_is_refused() -> None:
    with pytest.raises(QueryError, match="given twice"):
        parse_filters(["price:1..2", "price:3..4"], FIELDS)


def test_too_many_filters() -> None:
    with pytest.raises(QueryError, match="Too many filters"):
        parse_filters(["brand:x"] * 33, FIELDS)
