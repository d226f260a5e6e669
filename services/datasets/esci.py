"""Adapter for Amazon's Shopping Queries data set (ESCI), in its published Parquet layout."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from services.datasets.base import LabelledSet, Qrels
from services.datasets.protocol import add_judgment
from services.errors import DatasetError
from services.products import Product

log = logging.getLogger(__name__)

EXAMPLES = "shopping_queries_dataset_examples.parquet"
PRODUCTS = "shopping_queries_dataset_products.parquet"
GRADES = {"E": 3, "S": 2, "C": 1, "I": 0}
_EXAMPLE_COLUMNS = ["query_id", "query", "product_id", "product_locale", "esci_label"]
_PRODUCT_COLUMNS = ["product_id", "product_title", "product_brand", "product_color"]


def _read(path: Path, columns: list[str], filters: list[tuple[str, str, Any]]) -> pa.Table:
    if not path.is_file():
        raise DatasetError(
            f"ESCI file {path.name} not found in {path.parent}; pass the directory holding "
            f"{EXAMPLES} and {PRODUCTS} (esci:DIR)."
        )
    try:
        schema = pq.read_schema(path)
        missing = [c for c in columns + [f[0] for f in filters] if c not in schema.names]
        if missing:
            raise DatasetError(
                f"{path} lacks the columns {', '.join(missing)}; columns found: "
                f"{', '.join(schema.names)}. Pass the original ESCI Parquet files."
            )
        # small_version is 0/1 in the published files; accept a boolean column too.
        typed = [
            (name, op, bool(value) if pa.types.is_boolean(schema.field(name).type) else value)
            for name, op, value in filters
        ]
        return pq.read_table(path, columns=columns, filters=typed or None)
    except (OSError, pa.ArrowException) as exc:
        raise DatasetError(f"cannot read {path} as Parquet ({exc}); re-download it.") from exc


def _str(value: Any) -> str:
    return "" if value is None else " ".join(str(value).split())


def load_esci(
    directory: str | Path, *, locale: str = "us", split: str = "test", small_version: bool = True
) -> LabelledSet:
    """Load the ESCI examples of one locale and split as a :class:`LabelledSet`.

    ``small_version=True`` keeps the rows flagged for the reduced ("task 1") set; ``False``
    keeps every row of the split. Query ids are ESCI's ``query_id``; product ids are ESCI's
    ``product_id`` within ``locale``. Grades: E=3, S=2, C=1, I=0. The corpus is the judged
    products of the selected rows (text = title; payload title, brand, color); judgments of
    products without a title in the products file are dropped and counted in ``notes``.
    """
    root = Path(directory)
    filters: list[tuple[str, str, Any]] = [("product_locale", "=", locale), ("split", "=", split)]
    if small_version:
        filters.append(("small_version", "=", 1))
    examples = _read(root / EXAMPLES, _EXAMPLE_COLUMNS, filters).to_pydict()
    if not examples["query_id"]:
        raise DatasetError(
            f"no ESCI examples for locale={locale!r}, split={split!r}, "
            f"small_version={small_version}; use locale us/es/jp and split train/test."
        )
    judged = pa.array(sorted({str(p) for p in examples["product_id"]}), pa.string())
    table = _read(root / PRODUCTS, _PRODUCT_COLUMNS, [("product_locale", "=", locale)])
    table = table.filter(pc.is_in(table["product_id"].cast(pa.string()), value_set=judged))
    products: dict[str, Product] = {}
    for row in table.to_pylist():
        pid, title = _str(row["product_id"]), _str(row["product_title"])
        if title and pid not in products:
            payload = {"title": title, "brand": _str(row["product_brand"])}
            payload["color"] = _str(row["product_color"])
            products[pid] = Product(pid, title, {k: v for k, v in payload.items() if v})
    queries: dict[str, str] = {}
    qrels: Qrels = {}
    unknown_labels: set[str] = set()
    dropped = 0
    for qid_raw, text, pid_raw, label in zip(
        examples["query_id"],
        examples["query"],
        examples["product_id"],
        examples["esci_label"],
        strict=True,
    ):
        qid, pid = _str(qid_raw), _str(pid_raw)
        if label not in GRADES:
            unknown_labels.add(str(label))
            continue
        if pid not in products:
            dropped += 1
            continue
        queries.setdefault(qid, _str(text))
        add_judgment(qrels, qid, pid, GRADES[label])
    if unknown_labels:
        raise DatasetError(
            f"unknown esci_label values {sorted(unknown_labels)}; expected E, S, C or I."
        )
    if dropped:
        log.warning("ESCI: dropped %d judgments of products without a title", dropped)
    return LabelledSet(
        name=f"esci-{locale}-{split}{'-small' if small_version else ''}",
        products=list(products.values()),
        queries=queries,
        qrels=qrels,
        max_grade=3,
        notes={"source": str(root), "grade": "E=3 S=2 C=1 I=0", "dropped": str(dropped)},
    )
