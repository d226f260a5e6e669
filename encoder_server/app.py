"""The FastAPI app factory with a lifespan that loads models, polls the registry for hot
swaps and opens the event sink."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.datastructures import State
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from encoder_server.body_limit import BodyLimit
from encoder_server.holder import ModelHolder
from encoder_server.query_filters import parse_filters
from encoder_server.routes import admin, events, health, search, status
from services.errors import FlywheelError, QueryError, RegistryError, SearchIndexError
from services.events import EventSink
from services.kafka.producer import KafkaEventSink
from services.metrics import SEARCH_REQUESTS
from services.settings import SearchSettings, Settings

logger = logging.getLogger(__name__)


def _error(
    status: int,
    code: str,
    message: str,
    detail: list[dict[str, object]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, object] = {"error": code, "message": message}
    if detail is not None:
        body["detail"] = detail
    return JSONResponse(body, status_code=status, headers=headers)


def _explain(error: Mapping[str, Any], limits: SearchSettings) -> str:
    """One line per validation error that says what to fix (the schema's regexes do not)."""
    where = ".".join(str(p) for p in error["loc"][1:]) or str(error["loc"][0])
    if error["type"] == "string_pattern_mismatch" and error["loc"][1:2] == ("filter",):
        try:
            parse_filters([str(error["input"])], limits.filter_fields)
        except QueryError as exc:
            return f"{where}: {exc}"
        return f"{where}: use FIELD:VALUE or FIELD:LOW..HIGH"
    if error["type"] == "string_pattern_mismatch" and error["loc"][1:] == ("q",):
        return "q: is blank; send the shopper's search text in q"
    return f"{where}: {error['msg']}"


NO_MODEL_MESSAGE = "No model is loaded yet; retry shortly (GET /readyz says when it is ready)."
INDEX_DOWN_MESSAGE = "The search index did not answer; retry shortly."


INTERNAL_ERROR_MESSAGE = (
    "An internal error occurred and was logged; retry, and report it if it persists."
)


def _count_search(request: Request, status: str) -> None:
    """Count a search that ended in an error: the availability SLI is 5xx over all searches,
    so errors of other routes (events, admin pages) must not count as searches."""
    if request.url.path == "/search":
        SEARCH_REQUESTS.labels(status=status, model_version="", arm="").inc()


def _install_error_handlers(app: FastAPI, limits: SearchSettings, registry_poll_s: float) -> None:
    @app.exception_handler(QueryError)
    async def query_error(request: Request, exc: QueryError) -> JSONResponse:
        _count_search(request, "4xx")
        return _error(400, "bad_request", str(exc))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        _count_search(request, "4xx")
        problems = [_explain(e, limits) for e in exc.errors()]
        detail = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        return _error(422, "invalid_parameter", "; ".join(problems), detail)

    @app.exception_handler(SearchIndexError)
    @app.exception_handler(RegistryError)
    async def unavailable(request: Request, exc: FlywheelError) -> JSONResponse:
        _count_search(request, "5xx")
        # The error's text names files and hosts: it goes to the log, shoppers get a fixed
        # sentence (admins find the load error on /status and /admin/models).
        logger.warning("%s %s answered 503: %s", request.method, request.url.path, exc)
        holder: ModelHolder | None = getattr(request.app.state, "holder", None)
        if getattr(request.state, "admin", False):  # set by the admin token check
            message, retry = str(exc), 1.0
        elif holder is None or holder.routing is None:
            message, retry = NO_MODEL_MESSAGE, registry_poll_s
        else:
            message, retry = INDEX_DOWN_MESSAGE, 1.0
        return _error(503, "unavailable", message, headers={"Retry-After": str(math.ceil(retry))})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, "http_error", str(exc.detail), headers=exc.headers)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, _: Exception) -> JSONResponse:
        # A bug. Starlette's own 500 would not be counted, and the SLI would miss it; its
        # text could name paths. The server logs the traceback: Starlette re-raises after this.
        _count_search(request, "5xx")
        return _error(500, "internal_error", INTERNAL_ERROR_MESSAGE)


class _PinRouting:
    """ASGI middleware: every HTTP request holds a lease on the serving generation, so a hot
    swap closes old models only after the requests that may use them have finished."""

    def __init__(self, app: ASGIApp, state: State) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        holder: ModelHolder | None = getattr(self.state, "holder", None)
        if scope["type"] != "http" or holder is None:
            await self.app(scope, receive, send)
            return
        with holder.lease():
            await self.app(scope, receive, send)


async def _poll_registry(holder: ModelHolder, every_s: float) -> None:
    """Refresh from the registry forever; loading runs in a thread so searches go on."""
    while True:
        await asyncio.sleep(every_s)
        try:
            await anyio.to_thread.run_sync(holder.refresh)
        except Exception:  # keep polling whatever happens; the log has the details
            logger.exception("registry poll failed")


def create_app(settings: Settings | None = None, sink: EventSink | None = None) -> FastAPI:
    """Build the encoder_server app; models load in the lifespan, not at import."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        holder = ModelHolder(settings)
        app.state.holder = holder
        # GET /search's own bound on threads encoding and retrieving (made in the loop).
        app.state.search_limiter = anyio.CapacityLimiter(settings.server.search_workers)
        app.state.sink = sink or KafkaEventSink(settings.kafka, settings.spool_dir)
        try:
            holder.load()
        except FlywheelError as exc:
            # Stay up and unready: an orchestrator restarts us or the registry fills later.
            holder.last_error = str(exc)
            logger.error("no model loaded: %s", exc)
        poller = asyncio.create_task(_poll_registry(holder, settings.server.registry_poll_s))
        try:
            yield
        finally:
            poller.cancel()  # waits for a load in progress: its thread is not abandoned
            with contextlib.suppress(asyncio.CancelledError):
                await poller
            holder.close()
            app.state.sink.close()

    app = FastAPI(
        title="Flywheel search",
        summary="SPLADE product search on Qdrant that learns from its shoppers.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.add_middleware(BodyLimit, max_bytes=settings.server.max_body_bytes)
    if settings.server.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.server.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
        )
    app.add_middleware(_PinRouting, state=app.state)
    _install_error_handlers(app, settings.search, settings.server.registry_poll_s)
    app.include_router(search.build_router(settings.search))
    app.include_router(events.router)
    app.include_router(health.router)
    if settings.server.metrics_port is None:
        # Otherwise `flywheel serve` serves it on that port, away from the shoppers' one.
        app.include_router(health.metrics_router)
    app.include_router(status.router)
    app.include_router(admin.router)
    return app
