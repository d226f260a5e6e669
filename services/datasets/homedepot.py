"""Adapter for the Home Depot "Product Search Relevance" ``train.csv``."""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv

from services.datasets.base import LabelledSet, Qrels
from services.datasets.protocol import add_judgment, normalise_query, query_id
from services.errors import DatasetError
from services.products import Product

log = logging.getLogger(__name__)

COLUMNS = {
    "product_uid": pa.string(),
    "product_title": pa.string(),
    "search_term": pa.string(),
    "relevance": pa.float64(),
}
MAX_GRADE = 6


def grade(relevance: float) -> int:
    """Map the mean rating (1 irrelevant .. 3 exact) to 0..6: ``round((relevance - 1) * 3)``.

    Python's ``round`` (half to even) is the reference protocol, so 2.5 -> 4 and 1.5 -> 2.
    """
    return min(MAX_GRADE, max(0, round((relevance - 1.0) * 3.0)))


def _read(path: Path) -> dict[str, list[Any]]:
    if not path.is_file():
        raise DatasetError(
            f"Home Depot file {path} does not exist; pass the path of train.csv "
            "(e.g. homedepot:../shared/data/homedepot/train.csv)."
        )
    with path.open(encoding="utf-8-sig", errors="replace", newline="") as fh:
        header = next(csv.reader(fh), [])
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise DatasetError(
            f"{path} lacks the columns {', '.join(missing)}; columns found: "
            f"{', '.join(header) or 'none'}. Pass the Home Depot train.csv."
        )
    try:
        table = pacsv.read_csv(
            path,
            convert_options=pacsv.ConvertOptions(
                column_types=COLUMNS, include_columns=list(COLUMNS)
            ),
        )
    except (OSError, pa.ArrowException) as exc:
        raise DatasetError(f"cannot read {path} as CSV ({exc}); is it train.csv?") from exc
    if table.num_rows == 0:
        raise DatasetError(f"{path} has a header but no rows; pass the full train.csv.")
    columns: dict[str, list[Any]] = table.to_pydict()
    return columns


def load_homedepot(path: str | Path) -> LabelledSet:
    """Load Home Depot ``train.csv`` as a :class:`LabelledSet`.

    Products are deduplicated by ``product_uid`` (text = ``product_title``, payload
    ``{"title": ...}``; the first title wins where a uid has several). Rows with the same
    normalised ``search_term`` (see :func:`normalise_query`) form one query whose id is
    :func:`query_id` of that text and whose text is the normalised text. Grades follow
    :func:`grade` (0..6); a (query, product) pair rated twice keeps its highest grade.
    """
    path = Path(path)
    cols = _read(path)
    titles: dict[str, str] = {}
    queries: dict[str, str] = {}
    qrels: Qrels = {}
    conflicts = 0
    for uid, title, term, rel in zip(
        cols["product_uid"],
        cols["product_title"],
        cols["search_term"],
        cols["relevance"],
        strict=True,
    ):
        if uid is None or term is None or rel is None:
            continue
        pid, text = str(uid).strip(), " ".join(str(title or "").split())
        known = titles.setdefault(pid, text)
        conflicts += known != text
        norm = normalise_query(str(term))
        if not norm:
            continue
        qid = query_id(norm)
        queries.setdefault(qid, norm)
        add_judgment(qrels, qid, pid, grade(float(rel)))
    if conflicts:
        log.info(
            "%s: %d rows repeat a product_uid with another title; kept the first", path, conflicts
        )
    products = [Product(pid, text, {"title": text}) for pid, text in titles.items() if text]
    return LabelledSet(
        name="homedepot",
        products=products,
        queries=queries,
        qrels=qrels,
        max_grade=MAX_GRADE,
        notes={
            "source": str(path),
            "grade": "round((relevance - 1) * 3), 0..6",
            "query_id": "sha1(normalised search_term)[:16]",
        },
    )
