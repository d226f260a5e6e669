"""GET /search: encode the query with the routed version's encoder, search its index.

Encoding (ONNX Runtime) and the index call are synchronous and CPU-bound, so they run in
GET /search's own thread pool (``server.search_workers`` at once; app.state.search_limiter)
instead of on the event loop: health probes, POST /events and other searches keep being
answered while they work. The request awaits its thread, so the model lease that the app's
middleware holds for the request also covers the work in the thread.
"""

# No `from __future__ import annotations`: the route signature closes over `limits`,
# and FastAPI must see evaluated annotations.

import functools
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Query, Request
from pydantic import StringConstraints

from encoder_server.deps import HolderDep, SinkDep
from encoder_server.holder import LoadedModel, Routing
from encoder_server.query_filters import parse_filters
from encoder_server.schemas import ErrorResponse, ResultItem, SearchResponse
from services.errors import QueryError, SearchIndexError
from services.events import Arm, QueryEvent
from services.identity import client_key
from services.index.base import Hit, SearchFilters
from services.index.fusion import Fusion
from services.interleaving import TEAM_A, TEAM_B, rng_for, team_draft
from services.metrics import SEARCH_LATENCY, SEARCH_REQUESTS, SEARCH_RESULTS
from services.settings import SearchMode, SearchSettings

KNOWN_PARAMS = frozenset({"q", "k", "page", "mode", "filter", "session_id", "client_id"})


def _retrieve(
    model: LoadedModel,
    q: str,
    mode: SearchMode,
    k: int,
    offset: int,
    filters: SearchFilters,
    fusion: Fusion,
) -> list[Hit]:
    started = time.perf_counter()
    splade = model.encoder.encode_query(q) if mode != "bm25" else None
    bm25 = model.bm25.encode_query(q) if mode != "splade" else None
    encoded = time.perf_counter()
    SEARCH_LATENCY.labels(stage="encode", mode=mode).observe(encoded - started)
    if splade is not None and bm25 is not None:
        hits = model.index.hybrid_search(
            splade, bm25, limit=k, offset=offset, filters=filters, fusion=fusion
        )
    elif splade is not None:
        hits = model.index.search(splade, using="splade", limit=k, offset=offset, filters=filters)
    else:
        assert bm25 is not None
        hits = model.index.search(bm25, using="bm25", limit=k, offset=offset, filters=filters)
    SEARCH_LATENCY.labels(stage="retrieve", mode=mode).observe(time.perf_counter() - encoded)
    return hits


@dataclass(frozen=True, slots=True)
class Served:
    """The page a request serves: its hits, and for an interleaved list each hit's model."""

    model: LoadedModel
    arm: Arm
    hits: list[Hit]
    teams: list[str] | None = None
    control: LoadedModel | None = None


def _serve(
    routing: Routing,
    unit: str | None,
    query_id: str,
    interleave: bool,
    retrieve: Callable[[LoadedModel, int, int], list[Hit]],
    k: int,
    offset: int,
) -> Served:
    """Route the unit (client key or session); in the canary bucket with interleaving on,
    team-draft both models.

    Each model encodes with its own encoder and searches its own index (``retrieve``). An
    interleaved page is positions ``offset+1 .. offset+k`` of the interleaving of both
    models' top ``offset + k``, with the coin seeded from ``query_id``.
    """
    model, arm = routing.route(unit)
    if not (interleave and arm == "canary" and routing.canary is not None):
        return Served(model, arm, retrieve(model, k, offset))
    control = routing.production
    depth = offset + k
    canary_hits = retrieve(model, depth, 0)
    control_hits = retrieve(control, depth, 0)
    # Team A is the canary, team B production; the first hit of a product wins.
    by_team = {
        TEAM_A: {h.product_id: h for h in reversed(canary_hits)},
        TEAM_B: {h.product_id: h for h in reversed(control_hits)},
    }
    merged = team_draft(
        [h.product_id for h in canary_hits],
        [h.product_id for h in control_hits],
        depth,
        rng_for(query_id),
    )[offset:]
    versions = {TEAM_A: model.version, TEAM_B: control.version}
    return Served(
        model=model,
        arm="interleaved",
        hits=[by_team[team][pid] for pid, team in merged],
        teams=[versions[team] for _, team in merged],
        control=control,
    )


def client_address(request: Request, header: str | None, trusted_proxies: int = 1) -> str:
    """The shopper's address: the entry ``trusted_proxies`` from the right of a trusted
    proxy's header (each proxy appends the address it saw; entries further left come from
    the client and are not trusted), else the peer."""
    if header:
        hops = [h.strip() for h in request.headers.get(header, "").split(",") if h.strip()]
        if hops:
            return hops[-min(trusted_proxies, len(hops))]
    return request.client.host if request.client else "unknown"


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
    fusion = limits.hybrid_fusion()
    router = APIRouter(tags=["search"])

    @router.get(
        "/search",
        response_model=SearchResponse,
        responses={
            400: {
                "model": ErrorResponse,
                "description": "A bad filter or parameter, or page × k over "
                f"{limits.max_depth} (narrow the query or filter instead of paging deeper).",
            },
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
        page: Annotated[
            int,
            Query(
                ge=1,
                le=limits.max_page,
                description=f"1-based page; page × k may not exceed {limits.max_depth}.",
            ),
        ] = 1,
        mode: Annotated[
            SearchMode | None,
            Query(description=f"Retrieval mode; default {limits.default_mode}."),
        ] = None,
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
        if page * k > limits.max_depth:
            raise QueryError(
                f"page={page} with k={k} asks for results {(page - 1) * k + 1}-{page * k}, "
                f"deeper than the {limits.max_depth} served (page × k ≤ {limits.max_depth}); "
                "narrow the query or add filters (filter=FIELD:VALUE) instead of paging deeper."
            )
        filters = parse_filters(filter or [], limits.filter_fields)
        routing = holder.routing
        if routing is None:
            raise SearchIndexError("No model is loaded yet; see /readyz.")
        text = " ".join(q.split())
        mode = mode or limits.default_mode
        offset = (page - 1) * k
        query_id = uuid.uuid4().hex
        server = request.app.state.settings.server
        client = client_key(
            holder.secret,
            client_address(request, server.client_address_header, server.trusted_proxies),
        )
        work = functools.partial(
            _serve,
            routing,
            client if server.canary_unit == "client" else session_id,
            query_id,
            limits.interleaving,
            lambda m, limit, skip: _retrieve(m, text, mode, limit, skip, filters, fusion),
            k,
            offset,
        )
        # Not abandoned on cancellation (anyio's default): a client that hangs up still
        # waits here for its thread, so the request's model lease outlives the work.
        served = await anyio.to_thread.run_sync(work, limiter=request.app.state.search_limiter)
        model, arm, hits = served.model, served.arm, served.hits
        event = QueryEvent(
            query_id=query_id,
            user_query=text,
            session_id=session_id,
            client_id=client_id,
            client_key=client,
            model_version=model.version,
            arm=arm,
            mode=mode,
            filters={"keywords": filters.keywords, "ranges": filters.ranges},
            page=page,
            offset=offset,
            results=[h.product_id for h in hits],
            teams=served.teams,
            control_version=served.control.version if served.control else None,
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
                    id=h.product_id,
                    position=offset + i + 1,
                    score=h.score,
                    payload=h.payload,
                    team=served.teams[i] if served.teams else None,
                )
                for i, h in enumerate(hits)
            ],
            took_ms=round(took * 1000, 3),
        )

    return router
