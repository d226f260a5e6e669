"""Backend-agnostic point ids and stored payloads.

Both backends store exactly what these helpers produce, so a product gets the same point id
and the same payload on Qdrant Edge and on a Qdrant server.

Payload layout: ``product.payload`` unchanged plus the reserved key ``product_id`` (the
catalog id; it overwrites a payload column of that name). ``Product.text`` is *not* stored:
the loader derives it from payload columns (title, optionally description) that are stored
already, re-indexing reads the catalog, and a second copy of the longest field would only
inflate the index and every search response. A hit's payload is the product's payload as
given, without ``product_id`` (that is :attr:`Hit.product_id`).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from services.products import Product

POINT_NAMESPACE = uuid.UUID("5b0c6f3e-6f1d-4d2a-9a51-3f0f6c1e7a24")
"""Fixed namespace of :func:`point_id`; changing it orphans every stored point."""

PRODUCT_ID_KEY = "product_id"
"""Reserved payload key holding :attr:`Product.id`."""


def point_id(product_id: str) -> str:
    """The deterministic point id (a UUID string) of a catalog product id."""
    return str(uuid.uuid5(POINT_NAMESPACE, product_id))


def to_payload(product: Product) -> dict[str, Any]:
    """The payload stored for ``product``: its payload plus the reserved ``product_id``."""
    return {**product.payload, PRODUCT_ID_KEY: product.id}


def from_payload(payload: Mapping[str, Any] | None) -> tuple[str, dict[str, Any]]:
    """Split a stored payload into the product id and the product's own payload."""
    public = dict(payload or {})
    return str(public.pop(PRODUCT_ID_KEY, "")), public
