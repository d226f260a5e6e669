"""Who a request comes from and which arm it gets, in ways a client cannot choose.

A shopper's canary bucket and the client key stored with every served list are keyed hashes
(HMAC-SHA256, RFC 2104) under a secret the clients never see. With a public hash a client could
pick ``session_id`` values that land in the canary, or spread its traffic over made-up
``client_id`` values; under a keyed hash it can do neither.

The secret is ``FLYWHEEL_SERVER__ROUTING_SECRET`` where set (every replica must share it), else
``registry/routing.key``, created once with a random value.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from pathlib import Path

from services.errors import ConfigError
from services.settings import Settings

logger = logging.getLogger(__name__)

ROUTING_KEY = "routing.key"


def routing_secret(settings: Settings) -> bytes:
    """The secret of the keyed hashes: the configured one, else the registry's key file.

    Raises:
        ConfigError: no secret is configured and the key file can neither be read nor created.
    """
    configured = settings.server.routing_secret
    if configured is not None:
        return configured.get_secret_value().encode()
    path = settings.registry_dir / ROUTING_KEY
    try:
        return _read_or_create(path)
    except OSError as exc:
        raise ConfigError(
            f"cannot read or create the routing key {path} ({exc.strerror}); set "
            "FLYWHEEL_SERVER__ROUTING_SECRET to the same random string on every replica."
        ) from None


def _read_or_create(path: Path) -> bytes:
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        # A complete key file is linked into place: of two processes starting at once, one
        # link wins and both read its key; a crash leaves no empty key file behind.
        staged = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
        fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(secrets.token_hex(32))
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(staged, path)
                logger.info("created routing key %s", path)
            except FileExistsError:
                pass
        finally:
            staged.unlink(missing_ok=True)
    key = path.read_text(encoding="ascii").strip()
    if not key:
        raise OSError(0, "empty file", str(path))
    return key.encode()


def keyed_unit(secret: bytes, *parts: str) -> float:
    """A number in [0, 1) that only holders of ``secret`` can compute from ``parts``."""
    message = "\x1f".join(parts).encode()
    digest = hmac.new(secret, message, hashlib.sha256).digest()
    return int.from_bytes(digest[:8]) / 2**64


def client_key(secret: bytes, address: str) -> str:
    """A stable pseudonym of a network address (stored instead of the address itself)."""
    return hmac.new(secret, address.encode(), hashlib.sha256).hexdigest()[:16]


def in_canary(secret: bytes, canary: str, unit: str | None, fraction: float) -> bool:
    """Whether ``unit`` (a client key, or a session id) is in ``canary``'s bucket (a
    ``fraction`` of units).

    Keyed by the canary's version too, so each canary draws its own units and no unit is a
    canary for every version. A request without a unit always gets production.
    """
    if not unit or fraction <= 0:
        return False
    return keyed_unit(secret, "canary", canary, unit) < fraction
