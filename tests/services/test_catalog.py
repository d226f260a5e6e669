"""load_catalog: formats, column detection, payload normalisation and error messages."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from services.catalog import load_catalog, snake_case
from services.errors import CatalogError
from services.products import Product


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_detects_columns_and_normalises_payload(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "shop.csv",
        "SKU,Product Title,Price,Brand,Category,In Stock\n"
        '00123,"Claw Hammer, 16 oz",$1299.50,Estwing,Tools,true\n'
        "456,  Cordless   Drill ,89,,Power Tools,false\n",
    )
    products = load_catalog(path)
    assert products == [
        Product(
            "00123",
            "Claw Hammer, 16 oz",
            {
                "title": "Claw Hammer, 16 oz",
                "price": 1299.5,
                "brand": "Estwing",
                "category": "Tools",
                "in_stock": True,
            },
        ),
        Product(
            "456",
            "Cordless Drill",
            {
                "title": "Cordless Drill",
                "price": 89.0,
                "category": "Power Tools",
                "in_stock": False,
            },
        ),
    ]


def test_jsonl_with_explicit_columns_and_joined_text(tmp_path: Path) -> None:
    rows = [
        {"code": 7, "name": "Lamp", "description": "brass desk lamp", "brand": 3, "rating": 4.5},
        {"code": 8, "name": "Rug", "description": None, "color": "red"},
    ]
    path = _write(tmp_path / "c.ndjson", "\n".join(json.dumps(r) for r in rows) + "\n\n")
    products = load_catalog(path, id_column="code", text_columns=["name", "description"])
    assert [p.id for p in products] == ["7", "8"]
    assert products[0].text == "Lamp brass desk lamp"
    assert products[0].payload == {
        "title": "Lamp",
        "description": "brass desk lamp",
        "brand": "3",
        "rating": 4.5,
    }
    assert products[1] == Product("8", "Rug", {"title": "Rug", "color": "red"})


def test_parquet_and_explicit_format(tmp_path: Path) -> None:
    table = pa.table(
        {
            "product_id": pa.array([1, 2], pa.int64()),
            "product_title": ["Mop", "Broom"],
            "product_brand": ["Acme", None],
            "price": [3.0, float("nan")],
        }
    )
    pq.write_table(table, tmp_path / "catalog.bin")
    products = load_catalog(tmp_path / "catalog.bin", fmt="parquet")
    assert products == [
        Product("1", "Mop", {"title": "Mop", "brand": "Acme", "price": 3.0}),
        Product("2", "Broom", {"title": "Broom"}),
    ]


def test_text_column_string_and_snake_case_match(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.tsv", "itemId\tDisplayName\n1\tSaw\n")
    products = load_catalog(path, id_column="item_id", text_columns="display_name")
    assert products == [Product("1", "Saw", {"title": "Saw"})]
    assert snake_case("productTitle") == "product_title"
    assert snake_case("ProductID") == "product_id"
    assert snake_case(" Price ($) ") == "price"


def test_product_specific_id_column_beats_row_id(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.csv", "id,product_uid,product_title\n1,100001,Angle\n")
    assert load_catalog(path) == [Product("100001", "Angle", {"title": "Angle", "id": "1"})]


def test_duplicates_and_empty_text_are_skipped_with_warnings(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _write(tmp_path / "c.csv", "id,title\n1,First\n1,Second\n2,\n3,   \n4,Fourth\n")
    with caplog.at_level(logging.WARNING, logger="services.catalog"):
        products = load_catalog(path)
    assert [(p.id, p.text) for p in products] == [("1", "First"), ("4", "Fourth")]
    assert "1 duplicate ids" in caplog.text
    assert "skipped 2 rows" in caplog.text


def test_latin1_csv_is_read_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "c.csv"
    path.write_bytes("id,title\n1,Café table\n".encode("latin-1"))
    with caplog.at_level(logging.WARNING, logger="services.catalog"):
        products = load_catalog(path)
    assert products[0].text == "Café table"
    assert "not valid UTF-8" in caplog.text


def test_missing_id_column_names_found_columns_and_flag(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.csv", "code,label,price\n1,Saw,3\n")
    with pytest.raises(CatalogError) as err:
        load_catalog(path)
    message = str(err.value)
    assert "code, label, price" in message
    assert "--id-column" in message


def test_missing_text_column_names_found_columns_and_flag(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.csv", "id,label\n1,Saw\n")
    with pytest.raises(CatalogError) as err:
        load_catalog(path, text_columns=["title"])
    assert "'title' not found" in str(err.value)
    assert "id, label" in str(err.value)
    assert "--text-column" in str(err.value)


def test_given_id_column_missing(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.csv", "id,title\n1,Saw\n")
    with pytest.raises(CatalogError, match="'sku' not found; columns found: id, title"):
        load_catalog(path, id_column="sku")


@pytest.mark.parametrize(
    ("name", "content"),
    [("empty.csv", ""), ("header.csv", "id,title\n"), ("empty.jsonl", "\n\n"), ("e.parquet", "")],
)
def test_empty_files_raise(tmp_path: Path, name: str, content: str) -> None:
    path = _write(tmp_path / name, content)
    with pytest.raises(CatalogError, match=r"empty|no rows"):
        load_catalog(path)


def test_unknown_extension_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match=r"cannot tell the format.*\.xlsx"):
        load_catalog(_write(tmp_path / "c.xlsx", "id,title\n1,a\n"))
    with pytest.raises(CatalogError, match="does not exist"):
        load_catalog(tmp_path / "missing.csv")
    with pytest.raises(CatalogError, match="cannot read"):
        load_catalog(_write(tmp_path / "bad.parquet", "not parquet"))
    with pytest.raises(CatalogError, match=r"bad\.jsonl:2 is not valid JSON"):
        load_catalog(_write(tmp_path / "bad.jsonl", '{"id": 1, "title": "a"}\n{oops\n'))
