"""Keyed bucket and client hashes: stable under one secret, unpredictable without it."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

import pytest
from pydantic import SecretStr

from services.errors import ConfigError
from services.identity import ROUTING_KEY, client_key, keyed_unit, routing_secret
from services.settings import Settings


def test_secret_is_created_once_and_kept_private(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    first = routing_secret(settings)
    assert len(first) == 64
    assert routing_secret(settings) == first
    mode = stat.S_IMODE((settings.registry_dir / ROUTING_KEY).stat().st_mode)
    assert mode == 0o600


def test_concurrent_starts_agree_on_one_secret(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    seen: list[bytes] = []
    threads = [
        threading.Thread(target=lambda: seen.append(routing_secret(settings))) for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 8 and len(set(seen)) == 1  # every start succeeded, with one key
    assert [p.name for p in settings.registry_dir.iterdir()] == [ROUTING_KEY]


def test_configured_secret_wins_and_unreadable_key_says_what_to_do(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    settings.server.routing_secret = SecretStr("shared-by-replicas")
    assert routing_secret(settings) == b"shared-by-replicas"
    assert not (settings.registry_dir / ROUTING_KEY).exists()
    blocked = Settings(home=tmp_path / "file")
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(ConfigError, match="FLYWHEEL_SERVER__ROUTING_SECRET"):
        routing_secret(blocked)


def test_bucket_depends_on_the_secret() -> None:
    sessions = [f"s{i}" for i in range(2000)]
    a = [keyed_unit(b"one", "canary", "v2", s) < 0.5 for s in sessions]
    b = [keyed_unit(b"two", "canary", "v2", s) < 0.5 for s in sessions]
    assert a == [keyed_unit(b"one", "canary", "v2", s) < 0.5 for s in sessions]  # stable
    assert 900 < sum(a) < 1100  # about half
    # Another key puts about half the sessions in the other bucket: the hash is not public.
    assert 900 < sum(x != y for x, y in zip(a, b, strict=True)) < 1100


def test_each_canary_draws_its_own_sessions() -> None:
    sessions = [f"s{i}" for i in range(2000)]
    v2 = {s for s in sessions if keyed_unit(b"k", "canary", "v2", s) < 0.1}
    v3 = {s for s in sessions if keyed_unit(b"k", "canary", "v3", s) < 0.1}
    assert len(v2 & v3) < 60  # about 1% overlap expected by chance, not 10%


def test_client_key_is_a_stable_pseudonym() -> None:
    assert client_key(b"k", "10.0.0.1") == client_key(b"k", "10.0.0.1")
    assert client_key(b"k", "10.0.0.1") != client_key(b"k", "10.0.0.2")
    assert client_key(b"k", "10.0.0.1") != client_key(b"other", "10.0.0.1")
    assert "10.0.0.1" not in client_key(b"k", "10.0.0.1")
