"""Translation of Flywheel's search types into qdrant-client models and back."""

from __future__ import annotations

from typing import Any

from qdrant_client import models

from services.index.base import QDRANT_RRF_K, Hit, SearchFilters, VectorName
from services.index.common import StoredPoint
from services.index.ids import from_payload
from services.settings import FilterKind
from services.sparse import SparseVec

SPARSE_VECTORS: dict[str, models.SparseVectorParams] = {
    "splade": models.SparseVectorParams(),
    "bm25": models.SparseVectorParams(modifier=models.Modifier.IDF),
}


def sparse(vector: SparseVec) -> models.SparseVector:
    """A qdrant-client sparse vector with the same indices and values."""
    return models.SparseVector(indices=vector.indices.tolist(), values=vector.values.tolist())


def point(stored: StoredPoint) -> models.PointStruct:
    """A point with its named sparse vectors."""
    pid, payload, vectors = stored
    named: dict[str, Any] = {name: sparse(vec) for name, vec in vectors.items()}
    return models.PointStruct(id=pid, vector=named, payload=payload)


def server_filter(filters: SearchFilters | None) -> models.Filter | None:
    """All conditions must hold: keyword any-of, inclusive float ranges with open ends."""
    if not filters:
        return None
    must: list[models.Condition] = [
        models.FieldCondition(key=key, match=models.MatchAny(any=list(values)))
        for key, values in filters.keywords.items()
    ]
    must += [
        models.FieldCondition(key=key, range=models.Range(gte=low, lte=high))
        for key, (low, high) in filters.ranges.items()
        if low is not None or high is not None
    ]
    return models.Filter(must=must) if must else None


def field_schema(kind: FilterKind) -> models.PayloadSchemaType:
    """The payload index type of a filterable field."""
    return models.PayloadSchemaType.KEYWORD if kind == "keyword" else models.PayloadSchemaType.FLOAT


def nearest(
    vector: SparseVec,
    using: VectorName,
    *,
    limit: int,
    filters: SearchFilters | None = None,
    with_payload: bool = True,
) -> models.QueryRequest:
    """A single-vector query for batch search (returning payloads unless told not to)."""
    return models.QueryRequest(
        query=sparse(vector),
        using=using,
        limit=limit,
        filter=server_filter(filters),
        with_payload=with_payload,
    )


def prefetches(vectors: dict[VectorName, SparseVec], depth: int) -> list[models.Prefetch]:
    """One prefetch per vector."""
    return [
        models.Prefetch(query=sparse(vec), using=name, limit=depth) for name, vec in vectors.items()
    ]


def fusion(rrf_k: int) -> models.FusionQuery | models.RrfQuery:
    """Plain RRF (any server version) for Qdrant's own constant, parametrised RRF otherwise."""
    if rrf_k == QDRANT_RRF_K:
        return models.FusionQuery(fusion=models.Fusion.RRF)
    return models.RrfQuery(rrf=models.Rrf(k=rrf_k))


def hits(points: list[models.ScoredPoint]) -> list[Hit]:
    """Search results as :class:`Hit` objects, best first."""
    out = []
    for scored in points:
        product_id, payload = from_payload(scored.payload)
        out.append(Hit(product_id=product_id, score=float(scored.score), payload=payload))
    return out


def scored_ids(points: list[models.ScoredPoint]) -> list[tuple[str, float]]:
    """(point id, score) of each result, best first."""
    return [(str(scored.id), float(scored.score)) for scored in points]


def products(records: list[models.Record]) -> dict[str, tuple[str, dict[str, Any]]]:
    """Point id -> (product id, payload) of retrieved points."""
    return {str(record.id): from_payload(record.payload) for record in records}
