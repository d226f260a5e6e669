"""The indexed catalog, kept in ``Settings.catalog_dir`` (``$FLYWHEEL_HOME/catalog``) so later
jobs (``flywheel index --model``, the retrainer, ``flywheel adapt``) read exactly what production
indexed."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from services.errors import CatalogError
from services.products import Product

CATALOG_FILE = "products.parquet"


def save_products(products: list[Product], folder: Path) -> Path:
    """Write the catalog atomically as Parquet (id, text, payload as JSON) into ``folder``
    (``Settings.catalog_dir``)."""
    folder.mkdir(parents=True, exist_ok=True)
    table = pa.table(
        {
            "id": [p.id for p in products],
            "text": [p.text for p in products],
            "payload": [json.dumps(p.payload, ensure_ascii=False, default=str) for p in products],
        }
    )
    target = folder / CATALOG_FILE
    tmp = folder / f".{uuid.uuid4().hex}.tmp"
    pq.write_table(table, tmp)
    tmp.replace(target)
    return target


def load_products(folder: Path) -> list[Product]:
    """The catalog last saved in ``folder`` (``Settings.catalog_dir``)."""
    path = folder / CATALOG_FILE
    if not path.is_file():
        raise CatalogError(f"No indexed catalog at {path}; run `flywheel index --catalog FILE`.")
    table = pq.read_table(path).to_pydict()
    return [
        Product(id=i, text=t, payload=json.loads(p))
        for i, t, p in zip(table["id"], table["text"], table["payload"], strict=True)
    ]
