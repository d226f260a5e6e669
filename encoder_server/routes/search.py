"""GET /search: encode the query with the routed version's encoder, search its index."""

# No `from __future__ import annotations`: the route signature closes over `limits`,
# and FastAPI must see evaluated annotations.

import time
import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import StringConstraints

from encoder_server.deps import HolderDep, SinkDep
from encoder_server.holder import LoadedModel
from encoder_server.query_filters import parse_filters
from encoder_server.schemas import ErrorResponse, ResultItem, SearchMode, SearchResponse
from services.errors import QueryError, SearchIndexError
from services.events import QueryEvent
from services.index.base import Hit, SearchFilters
from services.metrics import SEARCH_LATENCY, SEARCH_REQUESTS, SEARCH_RESULTS
from services.settings import SearchSettings

KNOWN_PARAMS = frozenset({"q", "k", "page", "mode", "filter", "session_id", "client_id"})


def _retrieve(
    model: LoadedModel, q: str, mode: SearchMode, k: int, offset: int, filters: SearchFilters
) -> list[Hit]:
    started = time.perf_counter()
    splade = model.encoder.encode_query(q) if mode != "bm25" else None
    bm25 = model.bm25.encode_query(q) if mode != "splade" else None
    encoded = time.perf_counter()
    SEARCH_LATENCY.labels(stage="encode", mode=mode).observe(encoded - started)
    if splade is not None and bm25 is not None:
        hits = model.index.hybrid_search(splade, bm25, limit=k, offset=offset, filters=filters)
    elif splade is not None:
        hits = model.index.search(splade, using="splade", limit=k, offset=offset, filters=filters)
    else:
        assert bm25 is not None
        hits = model.index.search(bm25, using="bm25", limit=k, offset=offset, filters=filters)
    SEARCH_LATENCY.labels(stage="retrieve", mode=mode).observe(time.perf_counter() - encoded)
    return hits


def filter_pattern(limits: SearchSettings) -> str:
    """A regex for one ``filter`` value, so the OpenAPI schema names the filterable fields."""
    number = r"-?\d+(\.\d+)?"
    keyword = [f for f, kind in limits.filter_fields.items() if kind == "keyword"]
    ranged = [f for f, kind in limits.filter_fields.items() if kind == "range"]
    parts = []
    if keyword:
        parts.append(f"({'|'.join(keyword)}):.*\\S.*")
    if ranged:
        parts.append(f"({'|'.join(ranged)}):({number})?\\.\\.({number})?")
    return f"^({'|'.join(parts)})$" if parts else "^$"


def build_router(limits: SearchSettings) -> APIRouter:
    """The /search route, with the configured limits written into its OpenAPI schema."""
    router = APIRouter(tags=["search"])

    @router.get(
        "/search",
        response_model=SearchResponse,
        responses={
            400: {"model": ErrorResponse},
            422: {"model": ErrorResponse},
            503: {"model": ErrorResponse},
        },
    )
    async def search(
        request: Request,
        holder: HolderDep,
        sink: SinkDep,
        q: Annotated[
            str,
            Query(
                min_length=1,
                max_length=limits.max_query_chars,
                pattern=r"\S",
                description="What the shopper typed.",
            ),
        ],
        k: Annotated[int, Query(ge=1, le=limits.max_k, description="Results per page.")] = (
            limits.default_k
        ),
        page: Annotated[int, Query(ge=1, le=limits.max_page, description="1-based page.")] = 1,
        mode: Annotated[SearchMode, Query(description="Retrieval mode.")] = "splade",
        filter: Annotated[
            list[Annotated[str, StringConstraints(pattern=filter_pattern(limits))]] | None,
            Query(description="FIELD:VALUE (any of, per field) or FIELD:LOW..HIGH; repeatable."),
        ] = None,
        session_id: Annotated[str | None, Query(max_length=128)] = None,
        client_id: Annotated[str | None, Query(max_length=128)] = None,
    ) -> SearchResponse:
        """Search the catalog with the SPLADE model serving this shopper's arm."""
        started = time.perf_counter()
        unknown = sorted(set(request.query_params) - KNOWN_PARAMS)
        if unknown:
            raise QueryError(
                f"Unknown parameter(s) {', '.join(unknown)}; allowed: "
                f"{', '.join(sorted(KNOWN_PARAMS))}. Filters go in filter=FIELD:VALUE."
            )
        filters = parse_filters(filter or [], limits.filter_fields)
        routing = holder.routing
        if routing is None:
            raise SearchIndexError("No model is loaded yet; see /readyz.")
        model, arm = routing.route(session_id)
        text = " ".join(q.split())
        offset = (page - 1) * k
        hits = _retrieve(model, text, mode, k, offset, filters)
        event = QueryEvent(
            query_id=uuid.uuid4().hex,
            user_query=text,
            session_id=session_id,
            client_id=client_id,
            model_version=model.version,
            arm=arm,
            mode=mode,
            filters={"keywords": filters.keywords, "ranges": filters.ranges},
            page=page,
            results=[h.product_id for h in hits],
        )
        sink.emit(event)
        took = time.perf_counter() - started
        SEARCH_LATENCY.labels(stage="total", mode=mode).observe(took)
        SEARCH_RESULTS.observe(len(hits))
        SEARCH_REQUESTS.labels(status="2xx", model_version=model.version, arm=arm).inc()
        return SearchResponse(
            query_id=event.query_id,
            model_version=model.version,
            arm=arm,
            mode=mode,
            page=page,
            k=k,
            results=[
                ResultItem(
                    id=h.product_id, position=offset + i + 1, score=h.score, payload=h.payload
                )
                for i, h in enumerate(hits)
            ],
            took_ms=round(took * 1000, 3),
        )

    return router
