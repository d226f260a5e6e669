"""Adapter for Wayfair's WANDS data set: tab-separated product.csv, query.csv and label.csv."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv

from services.datasets.base import LabelledSet, Qrels
from services.datasets.protocol import add_judgment
from services.errors import DatasetError
from services.products import Product

GRADES = {"Exact": 2, "Partial": 1, "Irrelevant": 0}
_NUMBERS = ("rating_count", "average_rating", "review_count")


def _read(path: Path, text: list[str], optional: tuple[str, ...] = ()) -> dict[str, list[Any]]:
    """Read a WANDS TSV: ``text`` columns as strings (required), ``optional`` ones or Nones."""
    if not path.is_file():
        raise DatasetError(
            f"WANDS file {path.name} not found in {path.parent}; pass the WANDS 'dataset' "
            "directory holding product.csv, query.csv and label.csv (wands:DIR)."
        )
    with path.open(encoding="utf-8-sig", errors="replace", newline="") as fh:
        header = next(csv.reader(fh, delimiter="\t"), [])
    missing = [c for c in text if c not in header]
    if missing:
        raise DatasetError(
            f"{path} lacks the columns {', '.join(missing)}; columns found: "
            f"{', '.join(header) or 'none'}. WANDS files are tab-separated: pass the originals."
        )
    try:
        table = pacsv.read_csv(
            path,
            parse_options=pacsv.ParseOptions(delimiter="\t", newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in text},
                include_columns=text + [c for c in optional if c in header],
            ),
        )
    except (OSError, pa.ArrowException) as exc:
        raise DatasetError(f"cannot read {path} as tab-separated values ({exc}).") from exc
    columns: dict[str, list[Any]] = table.to_pydict()
    for name in optional:
        columns.setdefault(name, [None] * table.num_rows)
    return columns


def _clean(value: Any) -> str:
    return "" if value is None else " ".join(str(value).split())


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def load_wands(directory: str | Path) -> LabelledSet:
    """Load WANDS from its ``dataset`` directory as a :class:`LabelledSet`.

    The corpus is every product of ``product.csv`` (text = ``product_name``; payload title,
    ``category`` from ``product_class``, ``category_hierarchy`` and the rating numbers when
    present). Queries come from ``query.csv``; grades from ``label.csv``: Exact=2, Partial=1,
    Irrelevant=0 (a pair labelled twice keeps its highest grade). Ids are WANDS's own, as str.
    """
    root = Path(directory)
    cols = _read(
        root / "product.csv",
        ["product_id", "product_name", "product_class"],
        ("category hierarchy", *_NUMBERS),
    )
    products: dict[str, Product] = {}
    for i, pid_raw in enumerate(cols["product_id"]):
        pid, title = _clean(pid_raw), _clean(cols["product_name"][i])
        if not pid or not title or pid in products:
            continue
        payload: dict[str, Any] = {"title": title, "category": _clean(cols["product_class"][i])}
        payload["category_hierarchy"] = _clean(cols["category hierarchy"][i])
        payload.update({name: _number(cols[name][i]) for name in _NUMBERS})
        products[pid] = Product(
            pid, title, {k: v for k, v in payload.items() if v not in ("", None)}
        )
    qcols = _read(root / "query.csv", ["query_id", "query"])
    queries = {
        _clean(q): _clean(t) for q, t in zip(qcols["query_id"], qcols["query"], strict=True) if t
    }
    lcols = _read(root / "label.csv", ["query_id", "product_id", "label"])
    qrels: Qrels = {}
    for q, p, label in zip(lcols["query_id"], lcols["product_id"], lcols["label"], strict=True):
        grade = GRADES.get(_clean(label))
        if grade is None:
            raise DatasetError(
                f"{root / 'label.csv'}: unknown label {label!r}; expected Exact, Partial or "
                "Irrelevant."
            )
        add_judgment(qrels, _clean(q), _clean(p), grade)
    return LabelledSet(
        name="wands",
        products=list(products.values()),
        queries=queries,
        qrels=qrels,
        max_grade=2,
        notes={"source": str(root), "grade": "Exact=2 Partial=1 Irrelevant=0"},
    )
