"""k8s/base/qdrant-snapshot.py, the CronJob `qdrant-snapshot`'s script, against an in-memory
Qdrant cluster speaking the same REST calls (no network)."""

from __future__ import annotations

import importlib.util
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pytest

from tests.deploy.manifests import K8S


def load_script() -> ModuleType:
    path = K8S / "base" / "qdrant-snapshot.py"
    spec = importlib.util.spec_from_file_location("qdrant_snapshot", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Dataclasses resolve string annotations through the module's entry in sys.modules.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


script = load_script()
PEERS = ("qdrant-0.qdrant-headless", "qdrant-1.qdrant-headless", "qdrant-2.qdrant-headless")


@dataclass
class FakeCluster:
    """Three peers, each with its own snapshots per collection; records every request."""

    collections: tuple[str, ...] = ("products__v3", "products__v4")
    api_key: str = "secret"
    down: set[str] = field(default_factory=set)
    snapshots: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    clock: int = 0

    def __post_init__(self) -> None:
        for host in PEERS:
            for name in self.collections:
                self.snapshots[host, name] = [
                    {"name": f"{name}-old{i}.snapshot", "creation_time": f"2026-01-0{i}T00:00:00"}
                    for i in (1, 2, 3)
                ]

    def __call__(self, request: urllib.request.Request, timeout: float) -> bytes:
        assert timeout == 3600.0
        assert request.get_header("Api-key") == self.api_key
        url = urllib.parse.urlsplit(request.full_url)
        method = request.get_method()
        self.requests.append((method, f"{url.hostname}{url.path}"))
        if url.hostname in self.down:
            raise urllib.error.URLError("connection refused")
        parts = [urllib.parse.unquote(p) for p in url.path.strip("/").split("/")]
        result: Any
        if parts == ["cluster"]:
            peers = {str(i): {"uri": f"http://{h}:6335/"} for i, h in enumerate(PEERS)}
            result = {"status": "enabled", "peers": peers}
        elif parts == ["collections"]:
            result = {"collections": [{"name": n} for n in self.collections]}
        elif parts[0] == "collections" and parts[2] == "snapshots":
            kept = self.snapshots[str(url.hostname), parts[1]]
            if method == "POST":
                self.clock += 1
                result = {
                    "name": f"{parts[1]}-new{self.clock}.snapshot",
                    "creation_time": f"2026-02-01T00:00:{self.clock:02d}",
                    "size": 1000,
                }
                kept.append(result)
            elif method == "GET":
                result = list(kept)
            else:
                assert method == "DELETE"
                kept[:] = [s for s in kept if s["name"] != parts[3]]
                result = True
        else:
            raise AssertionError(f"unexpected {method} {request.full_url}")
        return json.dumps({"result": result, "status": "ok"}).encode()


def client(fake: FakeCluster) -> Any:
    return script.Qdrant("http://qdrant:6333", fake.api_key, 3600.0, fake)


def test_peer_urls_from_the_cluster_view() -> None:
    cluster = {
        "status": "enabled",
        "peers": {
            "7": {"uri": "http://qdrant-1.qdrant-headless:6335/"},
            "3": {"uri": "http://qdrant-0.qdrant-headless:6335/"},
        },
    }
    assert script.peer_urls("http://qdrant:6333", cluster) == [
        "http://qdrant-0.qdrant-headless:6333",
        "http://qdrant-1.qdrant-headless:6333",
    ]
    assert script.peer_urls("http://qdrant:6333", {"status": "disabled"}) == ["http://qdrant:6333"]
    with pytest.raises(script.SnapshotError):
        script.peer_urls("http://qdrant:6333", {"status": "enabled", "peers": {}})


def test_expired_keeps_the_newest() -> None:
    snapshots = [
        {"name": "b", "creation_time": "2026-01-02T00:00:00"},
        {"name": "a", "creation_time": "2026-01-03T00:00:00"},
        {"name": "c", "creation_time": None},
        {"name": "d", "creation_time": "2026-01-01T00:00:00"},
    ]
    assert script.expired(snapshots, 2) == ["d", "c"]
    assert script.expired(snapshots, 10) == []


def test_snapshots_every_collection_on_every_peer_and_prunes() -> None:
    fake = FakeCluster()
    assert script.run(client(fake), keep=2) == 0
    posts = [path.split("/") for method, path in fake.requests if method == "POST"]
    assert sorted((p[0], p[2]) for p in posts) == [(h, n) for h in PEERS for n in fake.collections]
    for (host, name), kept in fake.snapshots.items():
        # The one just taken and the newest of the three old ones.
        names = sorted(s["name"] for s in kept)
        assert len(names) == 2 and names[1] == f"{name}-old3.snapshot", (host, names)
        assert "-new" in names[0]


def test_a_failing_peer_does_not_stop_the_others() -> None:
    fake = FakeCluster(down={PEERS[1]})
    assert script.run(client(fake), keep=1) == len(fake.collections)
    for name in fake.collections:
        assert len(fake.snapshots[PEERS[0], name]) == 1
        assert len(fake.snapshots[PEERS[1], name]) == 3, "nothing deleted where nothing was taken"
        assert len(fake.snapshots[PEERS[2], name]) == 1


def test_main_exit_status() -> None:
    fake = FakeCluster(down={PEERS[2]})
    environ = {"FLYWHEEL_QDRANT__URL": "http://qdrant:6333", "FLYWHEEL_QDRANT__API_KEY": "secret"}
    assert script.main(environ, fake) == 1
    fake.down.clear()
    assert script.main(environ, fake) == 0
    assert script.main({**environ, "QDRANT_SNAPSHOT_KEEP": "0"}, fake) == 1
    # Only http(s): the script never opens files or other schemes.
    assert script.main({**environ, "FLYWHEEL_QDRANT__URL": "file:///etc/passwd"}, fake) == 1
