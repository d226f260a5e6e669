"""Translation of Flywheel's search types into Qdrant Edge requests and back."""

from __future__ import annotations

from typing import Any, cast

import qdrant_edge as qe

from services.index.base import Hit, SearchFilters, VectorName
from services.index.common import StoredPoint
from services.index.ids import from_payload
from services.settings import FilterKind
from services.sparse import SparseVec


def sparse(vector: SparseVec) -> qe.SparseVector:
    """An Edge sparse vector with the same indices and values."""
    return qe.SparseVector(vector.indices.tolist(), vector.values.tolist())


def point(stored: StoredPoint) -> qe.Point:
    """An Edge point with its named sparse vectors."""
    pid, payload, vectors = stored
    named: dict[str, qe.NamedVector] = {name: sparse(vec) for name, vec in vectors.items()}
    return qe.Point(pid, named, payload)


def edge_filter(filters: SearchFilters | None) -> qe.Filter | None:
    """All conditions must hold: keyword any-of, inclusive float ranges with open ends."""
    if not filters:
        return None
    must: list[qe.ConditionType] = [
        qe.FieldCondition(key, match=qe.MatchAny(list(values)))
        for key, values in filters.keywords.items()
    ]
    must += [
        qe.FieldCondition(key, range=qe.RangeFloat(gte=low, lte=high))
        for key, (low, high) in filters.ranges.items()
        if low is not None or high is not None
    ]
    return qe.Filter(must=must) if must else None


def field_schema(kind: FilterKind) -> qe.PayloadSchemaType:
    """The payload index type of a filterable field."""
    return qe.PayloadSchemaType.Keyword if kind == "keyword" else qe.PayloadSchemaType.Float


def nearest(
    vector: SparseVec,
    using: VectorName,
    limit: int,
    offset: int = 0,
    filters: SearchFilters | None = None,
    *,
    with_payload: bool = True,
) -> qe.QueryRequest:
    """A single-vector query (returning payloads unless ``with_payload`` is False)."""
    return qe.QueryRequest(
        limit=limit,
        offset=offset,
        query=qe.Query.Nearest(sparse(vector), using=using),
        filter=edge_filter(filters),
        with_payload=with_payload,
    )


def fused(
    vectors: dict[VectorName, SparseVec],
    limit: int,
    offset: int,
    filters: SearchFilters | None,
    depth: int,
    rrf_k: int,
) -> qe.QueryRequest:
    """RRF over one prefetch per vector; the top-level filter reaches every prefetch."""
    prefetches = [
        qe.Prefetch(limit=depth, query=qe.Query.Nearest(sparse(vec), using=name))
        for name, vec in vectors.items()
    ]
    return qe.QueryRequest(
        limit=limit,
        offset=offset,
        prefetches=prefetches,
        # The stub types Fusion.Rrf as a nested class, not a Fusion; the binding accepts it.
        query=cast("qe.Fusion", qe.Fusion.Rrf(k=rrf_k)),
        filter=edge_filter(filters),
        with_payload=True,
    )


def hits(points: list[qe.ScoredPoint]) -> list[Hit]:
    """Search results as :class:`Hit` objects, best first."""
    out = []
    for scored in points:
        product_id, payload = from_payload(scored.payload)
        out.append(Hit(product_id=product_id, score=float(scored.score), payload=payload))
    return out


def scored_ids(points: list[qe.ScoredPoint]) -> list[tuple[str, float]]:
    """(point id, score) of each result, best first."""
    return [(str(scored.id), float(scored.score)) for scored in points]


def products(records: list[qe.Record]) -> dict[str, tuple[str, dict[str, Any]]]:
    """Point id -> (product id, payload) of retrieved points."""
    return {str(record.id): from_payload(record.payload) for record in records}
