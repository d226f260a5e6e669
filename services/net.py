"""Local TCP ports: the one helper that every process binding a port uses (the embedded
broker, the demo's services, the integration tests)."""

from __future__ import annotations

import socket

from services.errors import ConfigError

WILDCARDS = ("", "0.0.0.0", "::")
"""Bind addresses that mean every interface."""


def free_port(host: str = "127.0.0.1", port: int = 0) -> int:
    """``port`` if nothing listens on it on ``host``; with ``port=0``, one the OS picks.

    The port is free when the call returns; another process may still take it before the
    caller binds it, so a caller that must succeed retries (as the embedded broker does).

    Raises:
        ConfigError: ``port`` is in use.
    """
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0" if host in WILDCARDS else host, port))
        except OSError as exc:
            raise ConfigError(
                f"Port {port} on {host or '0.0.0.0'} is in use ({exc.strerror}); stop what "
                "holds it or choose another port."
            ) from exc
        return int(sock.getsockname()[1])
