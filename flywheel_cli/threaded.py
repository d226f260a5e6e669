"""Run an ASGI app with uvicorn in a background thread (the demo's search service and shop)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn


@contextmanager
def serve_in_thread(
    app: Any, host: str = "127.0.0.1", port: int = 0, *, startup_timeout_s: float = 60
) -> Iterator[str]:
    """Serve ``app`` until the block exits; yields its base URL (``port=0`` picks a free port).

    Raises:
        RuntimeError: the server did not start in time (e.g. the port is taken).
    """
    server = uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name=f"uvicorn:{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(
                f"the server on {host}:{port} did not start; is the port in use? "
                "Pick another with --port (0 picks a free one)."
            )
        time.sleep(0.05)
    bound = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{_url_host(host)}:{bound}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _url_host(host: str) -> str:
    """A host to put in a URL: a wildcard bind address is reached on loopback."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host
