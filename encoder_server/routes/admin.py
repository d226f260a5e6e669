"""Model administration: hot reload, promote, rollback, canary, and the registry's versions.

State-changing endpoints edit the shared registry (so every replica follows within
``registry_poll_s``) and then refresh this replica at once. They need
``Authorization: Bearer <FLYWHEEL_SERVER__ADMIN_TOKEN>`` and are off while no token is set;
so does GET /admin/models (card sources may be paths; the last load error is exception text).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Security
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from encoder_server.deps import HolderDep, SettingsDep
from encoder_server.holder import ModelHolder
from encoder_server.schemas import ErrorResponse, ModelStatus
from services.errors import PointersChangedError, RegistryError
from services.registry import Expected, Pointers
from services.settings import Settings

logger = logging.getLogger(__name__)

_bearer = HTTPBearer(auto_error=False, description="FLYWHEEL_SERVER__ADMIN_TOKEN")


def _check_token(request: Request, settings: Settings, given: str, how: str) -> None:
    """Refuse unless admin endpoints are on and ``given`` is the admin token; ``how`` says
    how this endpoint takes the token. Marks the request as an admin's (its errors may then
    show their details)."""
    token = settings.server.admin_token
    if token is None:
        raise HTTPException(
            403,
            "Admin endpoints and the status page are off until FLYWHEEL_SERVER__ADMIN_TOKEN is "
            "set; set it and restart, or use the CLI (`flywheel promote`, `flywheel rollback`) "
            "on the registry.",
        )
    # Constant time, so the token cannot be guessed byte by byte from response times.
    if not hmac.compare_digest(given.encode(), token.get_secret_value().encode()):
        raise HTTPException(
            401,
            f"Missing or wrong admin token; send {how}.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    request.state.admin = True


def require_admin(
    request: Request,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> None:
    """Refuse unless admin endpoints are on and the bearer token matches."""
    given = credentials.credentials if credentials else ""
    _check_token(request, settings, given, "Authorization: Bearer <FLYWHEEL_SERVER__ADMIN_TOKEN>")


def require_admin_page(
    request: Request,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    token: Annotated[
        str | None,
        Query(
            description="The admin token, for a browser that cannot send the header; prefer "
            "the header elsewhere (a URL ends up in browser history and proxy logs)."
        ),
    ] = None,
) -> None:
    """:func:`require_admin` for pages a browser opens: the bearer header or ``?token=``."""
    given = credentials.credentials if credentials else (token or "")
    _check_token(
        request,
        settings,
        given,
        "Authorization: Bearer <FLYWHEEL_SERVER__ADMIN_TOKEN>, or open the page with "
        "?token=<FLYWHEEL_SERVER__ADMIN_TOKEN>",
    )


AdminDep = Annotated[None, Depends(require_admin)]
AdminPageDep = Annotated[None, Depends(require_admin_page)]


class AdminState(BaseModel):
    """The registry pointers and what this replica serves after the operation."""

    pointers: Pointers
    serving: list[ModelStatus]
    open_versions: list[str] = Field(
        description="Versions with an open index: serving, or draining in-flight requests."
    )
    last_error: str | None = Field(description="Why the last refresh failed, if it did.")


class VersionSummary(BaseModel):
    """One registered version, from its card."""

    version: str
    role: str = Field(description="production, canary, history (a rollback target) or ''.")
    parent: str | None
    source: str
    created_at: datetime
    metrics: dict[str, Any]
    gate: dict[str, Any] | None


class ModelsResponse(AdminState):
    """Every registered version with its card summary, plus the pointers and serving state."""

    versions: list[VersionSummary]


AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "Missing or wrong admin token."},
    403: {"model": ErrorResponse, "description": "Admin endpoints are off (no token set)."},
}
STATE_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "The registry refused the change."},
    **AUTH_RESPONSES,
    409: {
        "model": ErrorResponse,
        "description": "The pointers are not the expected ones (pointers_changed), or the "
        "registry changed and this replica could not load it (load_failed).",
    },
}

ExpectProduction = Annotated[
    str | None,
    Query(description="Compare-and-swap: act only if production is still this version."),
]
ExpectCanary = Annotated[
    str | None,
    Query(
        description="Compare-and-swap: act only if the canary is still this version "
        "('none': no canary)."
    ),
]


Force = Annotated[
    bool,
    Query(description="Serve a version that has not passed the gate (recorded in events.jsonl)."),
]


def _expect(holder: ModelHolder, production: str | None, canary: str | None) -> Expected | None:
    if production is None and canary is None:
        return None
    return Expected.given(holder.registry.pointers(), production, canary)


router = APIRouter(prefix="/admin", tags=["admin"])


def _state(holder: ModelHolder) -> AdminState:
    routing = holder.routing
    serving = []
    if routing is not None:
        serving.append(
            ModelStatus(
                version=routing.production.version,
                arm="production",
                products=routing.production.products,
            )
        )
        if routing.canary:
            canary = routing.canary
            serving.append(
                ModelStatus(version=canary.version, arm="canary", products=canary.products)
            )
    return AdminState(
        pointers=holder.registry.pointers(),
        serving=serving,
        open_versions=holder.open_versions(),
        last_error=holder.last_error,
    )


def _apply(
    holder: ModelHolder, change: Callable[[], object] | None = None
) -> AdminState | JSONResponse:
    """Change the registry, refresh this replica now, and report what it serves."""
    if change is not None:
        try:
            change()
        except PointersChangedError as exc:
            return JSONResponse({"error": "pointers_changed", "message": str(exc)}, status_code=409)
        except RegistryError as exc:
            return JSONResponse({"error": "bad_request", "message": str(exc)}, status_code=400)
    holder.refresh(force=True)
    state = _state(holder)
    pointers = state.pointers
    wanted = [(pointers.production, "production")]
    if pointers.canary:
        wanted.append((pointers.canary, "canary"))
    if [(m.version, m.arm) for m in state.serving] != wanted:
        message = holder.last_error or "this replica does not serve what the registry names"
        return JSONResponse({"error": "load_failed", "message": message}, status_code=409)
    return state


def _actor(request: Request) -> str:
    return f"admin-api:{request.client.host if request.client else 'unknown'}"


@router.post("/reload", response_model=AdminState, responses=STATE_RESPONSES)
def reload(_: AdminDep, holder: HolderDep) -> AdminState | JSONResponse:
    """Load what the registry names now, instead of waiting for the next poll."""
    return _apply(holder)


@router.post("/promote", response_model=AdminState, responses=STATE_RESPONSES)
def promote(
    _: AdminDep,
    request: Request,
    holder: HolderDep,
    version: Annotated[
        str | None, Query(description="Version to promote; default: the canary.")
    ] = None,
    expect_production: ExpectProduction = None,
    expect_canary: ExpectCanary = None,
    force: Force = False,
) -> AdminState | JSONResponse:
    """Make the canary (or the given version) production; the old one becomes a rollback target."""
    return _apply(
        holder,
        lambda: holder.registry.promote(
            version,
            actor=_actor(request),
            expect=_expect(holder, expect_production, expect_canary),
            force=force,
        ),
    )


@router.post("/rollback", response_model=AdminState, responses=STATE_RESPONSES)
def rollback(
    _: AdminDep,
    request: Request,
    holder: HolderDep,
    expect_production: ExpectProduction = None,
    expect_canary: ExpectCanary = None,
) -> AdminState | JSONResponse:
    """Serve the previous production again and stop any canary."""
    return _apply(
        holder,
        lambda: holder.registry.rollback(
            actor=_actor(request), expect=_expect(holder, expect_production, expect_canary)
        ),
    )


@router.post("/canary", response_model=AdminState, responses=STATE_RESPONSES)
def canary(
    _: AdminDep,
    request: Request,
    holder: HolderDep,
    version: Annotated[str, Query(description="Version to serve to the canary sessions.")],
    fraction: Annotated[float, Query(gt=0, le=1, description="Share of shoppers, by hash.")],
    force: Force = False,
) -> AdminState | JSONResponse:
    """Route a fraction of shoppers (stable per client or session) to a canary version."""
    return _apply(
        holder,
        lambda: holder.registry.set_canary(version, fraction, actor=_actor(request), force=force),
    )


@router.delete("/canary", response_model=AdminState, responses=STATE_RESPONSES)
def clear_canary(
    _: AdminDep,
    request: Request,
    holder: HolderDep,
    expect_production: ExpectProduction = None,
    expect_canary: ExpectCanary = None,
) -> AdminState | JSONResponse:
    """Stop the canary: every session goes to production."""
    return _apply(
        holder,
        lambda: holder.registry.clear_canary(
            actor=_actor(request), expect=_expect(holder, expect_production, expect_canary)
        ),
    )


@router.get(
    "/models",
    response_model=ModelsResponse,
    responses=AUTH_RESPONSES,
)
def models(_: AdminDep, holder: HolderDep) -> ModelsResponse:
    """Registered versions with their card summaries, the pointers and what serves."""
    state = _state(holder)
    pointers = state.pointers
    roles = dict.fromkeys(pointers.history, "history")
    for version, role in ((pointers.production, "production"), (pointers.canary, "canary")):
        if version is not None:
            roles[version] = role
    versions = []
    for version in holder.registry.versions():
        card = holder.registry.card(version)
        versions.append(
            VersionSummary(
                version=version,
                role=roles.get(version, ""),
                parent=card.parent,
                source=card.source,
                created_at=card.created_at,
                metrics=card.metrics,
                gate=card.gate.model_dump(mode="json") if card.gate else None,
            )
        )
    return ModelsResponse(**state.model_dump(), versions=versions)
