"""Read a shop's product catalog (CSV, TSV, JSON Lines or Parquet) into :class:`Product` records.

The id column and the text column are detected from common names unless given; every other
column goes into the payload under a snake_case key, with ``title``, ``price`` (float),
``brand`` and ``category`` (str) normalised so that search filters find them.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import logging
import math
import re
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from services.errors import CatalogError
from services.products import Product

log = logging.getLogger(__name__)

ID_NAMES = ("product_id", "product_uid", "item_id", "sku", "asin", "id", "uid", "doc_id", "pid")
TEXT_NAMES = ("title", "product_title", "name", "product_name", "item_name", "text", "contents")
FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
}
_ALIASES = {"product_brand": "brand", "product_category": "category", "product_price": "price"}


def snake_case(name: str) -> str:
    """Normalise a column name: ``"Product Title"`` and ``"productTitle"`` -> ``product_title``."""
    name = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name.strip())
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def _read_csv(path: Path, delimiter: str, string_columns: set[str]) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8-sig", errors="replace", newline="") as fh:
        header = next(csv.reader(fh, delimiter=delimiter), [])
    if not header:
        raise CatalogError(f"{path} is empty: add a header row and one row per product.")
    as_text = {snake_case(c) for c in string_columns} | set(ID_NAMES)
    forced = {c: pa.string() for c in header if snake_case(c) in as_text}
    parse = pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True)
    for encoding in ("utf8", "latin-1"):
        try:
            table = pacsv.read_csv(
                path,
                read_options=pacsv.ReadOptions(encoding=encoding),
                parse_options=parse,
                convert_options=pacsv.ConvertOptions(column_types=forced),
            )
        except pa.ArrowInvalid as exc:
            if encoding == "utf8" and "UTF8" in str(exc):
                continue
            raise CatalogError(f"cannot parse {path}: {exc}. Check delimiter and quoting.") from exc
        if encoding == "utf8" and any(pa.types.is_binary(f.type) for f in table.schema):
            continue
        if encoding != "utf8":
            log.warning("%s is not valid UTF-8; read it as Latin-1 (re-save it as UTF-8)", path)
        rows: list[dict[str, Any]] = table.to_pylist()
        return rows
    raise CatalogError(f"cannot decode {path}; re-save it as UTF-8.")  # pragma: no cover


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with path.open(encoding="utf-8-sig") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CatalogError(
                    f"{path}:{lineno} is not valid JSON ({exc.msg}); fix that line."
                ) from exc
            if not isinstance(row, dict):
                raise CatalogError(
                    f"{path}:{lineno} is not a JSON object; write one product per line."
                )
            rows.append(row)
    return rows


def read_rows(
    path: Path, fmt: str | None = None, string_columns: set[str] | None = None
) -> list[dict[str, Any]]:
    """Read every row of a catalog file as a dict; raises :class:`CatalogError` when unreadable."""
    kind = fmt.lower().lstrip(".") if fmt else FORMATS.get(path.suffix.lower())
    if kind not in FORMATS.values():
        raise CatalogError(
            f"cannot tell the format of {path} (extension {path.suffix or 'none'!r}, "
            f"format {fmt!r}); use one of {', '.join(FORMATS)} or pass the format "
            "explicitly (csv, tsv, jsonl, parquet)."
        )
    if not path.is_file():
        raise CatalogError(f"catalog file {path} does not exist; check the path.")
    if path.stat().st_size == 0:
        raise CatalogError(f"{path} is empty: add a header row and one row per product.")
    try:
        if kind == "parquet":
            rows: list[dict[str, Any]] = pq.read_table(path).to_pylist()
            return rows
        if kind == "jsonl":
            return _read_jsonl(path)
        return _read_csv(path, "\t" if kind == "tsv" else ",", string_columns or set())
    except (OSError, UnicodeDecodeError, pa.ArrowException) as exc:
        raise CatalogError(
            f"cannot read {path} as {kind}: {exc}. Check the file and its format."
        ) from exc


def _pick(columns: list[str], given: str | None, names: Sequence[str], what: str, flag: str) -> str:
    by_snake = {snake_case(c): c for c in reversed(columns)}
    if given is not None:
        found = given if given in columns else by_snake.get(snake_case(given))
        if found is None:
            raise CatalogError(
                f"{what} column {given!r} not found; columns found: {', '.join(columns)}. "
                f"Pass {flag} with one of them."
            )
        return found
    for name in names:
        if name in by_snake:
            return by_snake[name]
    raise CatalogError(
        f"no {what} column found (looked for {', '.join(names)}); columns found: "
        f"{', '.join(columns)}. Pass {flag} to name it."
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value


def _price(value: Any) -> float | None:
    try:
        price = float(str(value).replace("$", "").replace(",", "").strip())
    except ValueError:
        return None
    return price if math.isfinite(price) else None


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).strip()


def _id(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return "" if value is None else str(value).strip()


def _payload_keys(columns: list[str], id_col: str, title_col: str) -> dict[str, str]:
    """Column -> payload key: snake_case, the title column as ``title``, aliases such as
    ``product_brand`` as ``brand`` unless a column already has the canonical name."""
    keys = {c: snake_case(c) or c for c in columns if c not in (id_col, title_col)}
    taken = set(keys.values()) | {"title"}
    for col, key in keys.items():
        if key in _ALIASES and _ALIASES[key] not in taken:
            keys[col] = _ALIASES[key]
            taken.add(keys[col])
    return {title_col: "title", **keys}


def _payload(row: dict[str, Any], keys: dict[str, str]) -> dict[str, Any]:
    payload: dict[str, Any] = {}
    for col, raw in row.items():
        key = keys.get(col)
        value = _jsonable(raw)
        if key is None or value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        if key == "price":
            value = _price(value)
            if value is None:
                continue
        elif key in ("brand", "category", "title"):
            value = " ".join(str(value).split())
        if isinstance(value, str) and not value.strip():
            continue
        payload.setdefault(key, value)
    return payload


def products_from_rows(
    rows: list[dict[str, Any]],
    *,
    id_column: str | None = None,
    text_columns: str | Sequence[str] | None = None,
    source: str = "catalog",
) -> list[Product]:
    """Turn dict rows into products (see :func:`load_catalog` for the rules)."""
    if not rows:
        raise CatalogError(f"{source} has no rows; add one row per product.")
    columns = list(dict.fromkeys(c for row in rows[:1000] for c in row))
    id_col = _pick(columns, id_column, ID_NAMES, "id", "--id-column")
    wanted: list[str | None] = [None]
    if text_columns:
        wanted = [text_columns] if isinstance(text_columns, str) else list(text_columns)
    text_cols = [_pick(columns, t, TEXT_NAMES, "text", "--text-column") for t in wanted]
    keys = _payload_keys(columns, id_col, text_cols[0])
    products: list[Product] = []
    seen: set[str] = set()
    duplicates: list[str] = []
    no_text = 0
    for row in rows:
        pid = _id(row.get(id_col))
        text = " ".join(_text(row.get(c)) for c in text_cols).strip()
        if not pid or not text:
            no_text += 1
            continue
        if pid in seen:
            duplicates.append(pid)
            continue
        seen.add(pid)
        products.append(Product(pid, " ".join(text.split()), _payload(row, keys)))
    if duplicates:
        log.warning(
            "%s: %d duplicate ids kept their first row (e.g. %s)",
            source,
            len(duplicates),
            duplicates[:5],
        )
    if no_text:
        log.warning("%s: skipped %d rows with an empty id or empty text", source, no_text)
    if not products:
        raise CatalogError(
            f"{source}: no row has both an id ({id_col!r}) and text ({', '.join(text_cols)}); "
            "pass --id-column / --text-column to pick other columns."
        )
    return products


def load_catalog(
    path: str | Path,
    *,
    id_column: str | None = None,
    text_columns: str | Sequence[str] | None = None,
    fmt: str | None = None,
) -> list[Product]:
    """Load a product catalog file.

    The format comes from the extension (``.csv``, ``.tsv``, ``.jsonl``/``.ndjson``,
    ``.parquet``) unless ``fmt`` names it. ``id_column`` defaults to the first of
    :data:`ID_NAMES` present and ``text_columns`` to the first of :data:`TEXT_NAMES`; several
    text columns are joined with a space, and the first one is stored as ``payload["title"]``.
    Column names match as given or after snake_casing. Ids are always strings; duplicate ids
    keep their first row and rows with empty text are skipped (both logged as warnings).

    Raises:
        CatalogError: the file is missing, empty, of unknown format, unreadable, or the id/text
            columns cannot be found (the message lists the columns that were found).
    """
    path = Path(path)
    forced = {id_column} if id_column else set()
    rows = read_rows(path, fmt, forced)
    return products_from_rows(
        rows, id_column=id_column, text_columns=text_columns, source=str(path)
    )
