"""Serve the storefront page: its static files, ``config.json`` naming the search API, and a
uvicorn server in a background thread for the demo and the browser tests."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flywheel_cli.threaded import serve_in_thread

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
"""index.html, shop.js and shop.css (package data of ``flywheel_cli``)."""


def normalise_api_base(api_base: str) -> str:
    """``api_base`` without a trailing slash; a ``ValueError`` unless it is an http(s) URL.

    The page joins paths onto it (``{api}/search``), so a query or fragment would break them.
    """
    parts = urlsplit(api_base.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(
            f"api_base must be an http(s) URL such as http://127.0.0.1:8000, got {api_base!r}"
        )
    if parts.query or parts.fragment:
        raise ValueError(f"api_base must not have a query or fragment, got {api_base!r}")
    return api_base.strip().rstrip("/")


class _SecurityHeaders:
    """Adds a Content-Security-Policy that lets the page fetch only from itself and the API
    origin, as a shop would ship it, so the browser test also proves the page needs nothing
    else (no CDN, no inline script)."""

    def __init__(self, app: ASGIApp, api_origin: str) -> None:
        self.app = app
        self.headers = [
            (
                b"content-security-policy",
                (
                    "default-src 'self'; script-src 'self'; style-src 'self'; "
                    f"connect-src 'self' {api_origin}; img-src 'self' data:; "
                    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
                ).encode(),
            ),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"strict-origin-when-cross-origin"),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self.headers]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def storefront_app(api_base: str) -> Starlette:
    """The storefront as an ASGI app: ``/`` (index.html), its assets, and ``/config.json``
    (``{"api": api_base}``), which the page reads to find the search API."""
    api = normalise_api_base(api_base)
    parts = urlsplit(api)

    async def config(_request: Request) -> JSONResponse:
        # no-store: a restarted demo may point the same shop at another API port.
        return JSONResponse({"api": api}, headers={"cache-control": "no-store"})

    app = Starlette(
        routes=[
            Route("/config.json", config, methods=["GET"]),
            Mount("/", app=StaticFiles(directory=STATIC_DIR, html=True), name="static"),
        ]
    )
    app.add_middleware(_SecurityHeaders, api_origin=f"{parts.scheme}://{parts.netloc}")
    return app


@contextlib.contextmanager
def serve_storefront(api_base: str, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve the storefront for ``api_base`` in a background thread while the block runs;
    yields its base URL (``port=0`` picks a free port)."""
    with serve_in_thread(storefront_app(api_base), host, port) as url:
        logger.info("storefront on %s", url)
        yield url
