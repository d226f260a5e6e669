"""Hot swap in a real `flywheel serve` process while 8 clients search without pause.

v1 indexes the odd catalog positions and v2 the even ones, so a response that names v2 but
holds a v1-only id would show an encoder and an index from different versions.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from services.kafka.broker import EmbeddedBroker
from services.net import free_port
from services.registry import ModelRegistry
from tests.conftest import IndexedHome
from tests.encoder_server.test_hot_swap import QUERIES, make_two_version_home
from tests.integration.conftest import start_server, stop_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOKEN = "swap-under-load"
WORKERS = 8
PHASE_S = 1.0


@dataclass(frozen=True)
class Served:
    started: float
    ended: float
    status: int
    version: str | None
    ids: frozenset[str]


def search_until(url: str, worker: int, stop: threading.Event, out: list[Served]) -> None:
    with httpx.Client(base_url=url, timeout=10) as client:
        n = 0
        while not stop.is_set():
            params: dict[str, str | int] = {
                "q": QUERIES[n % len(QUERIES)],
                "k": 10,
                "session_id": f"w{worker}-{n}",
            }
            started = time.monotonic()
            try:
                response = client.get("/search", params=params)
            except httpx.HTTPError:
                out.append(Served(started, time.monotonic(), -1, None, frozenset()))
                continue
            body = response.json() if response.status_code == 200 else {}
            ids = frozenset(r["id"] for r in body.get("results", []))
            out.append(
                Served(
                    started, time.monotonic(), response.status_code, body.get("model_version"), ids
                )
            )
            n += 1


def wait_for_production(url: str, version: str, timeout_s: float = 10) -> float:
    deadline = time.monotonic() + timeout_s
    while httpx.get(f"{url}/readyz", timeout=5).json()["models"][0]["version"] != version:
        assert time.monotonic() < deadline, f"the server did not switch to {version}"
        time.sleep(0.02)
    return time.monotonic()


def test_promote_and_rollback_under_load(
    indexed_home: IndexedHome,
    broker: EmbeddedBroker,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    home = make_two_version_home(indexed_home, tmp_path / "home")
    monkeypatch.setenv("FLYWHEEL_SERVER__ADMIN_TOKEN", TOKEN)
    monkeypatch.setenv("FLYWHEEL_SERVER__REGISTRY_POLL_S", "0.2")
    port = free_port("127.0.0.1")
    url = f"http://127.0.0.1:{port}"
    proc = start_server(str(home.settings.home), port, broker.bootstrap_servers)
    served: list[Served] = []
    stop = threading.Event()
    workers = [
        threading.Thread(target=search_until, args=(url, i, stop, served)) for i in range(WORKERS)
    ]
    try:
        for worker in workers:
            worker.start()
        time.sleep(PHASE_S)
        promote_sent = time.monotonic()  # the admin API swaps before it answers
        promoted = httpx.post(
            f"{url}/admin/promote",
            params={"version": "v2"},
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=30,
        )
        promote_done = time.monotonic()
        assert promoted.status_code == 200, promoted.text
        time.sleep(PHASE_S)
        rollback_sent = time.monotonic()  # through the registry: the server's poller swaps
        ModelRegistry(home.settings.registry_dir).rollback(actor="test")
        rolled_back = wait_for_production(url, "v1")
        time.sleep(PHASE_S)
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=15)
        metrics = httpx.get(f"{url}/metrics", timeout=5).text
        log = stop_server(proc)
    assert "Application shutdown complete" in log

    failed = [s for s in served if s.status != 200]
    assert not failed, f"{len(failed)} of {len(served)} requests failed: {failed[:3]}"
    for s in served:
        assert s.version in {"v1", "v2"}
        assert s.ids <= home.ids[s.version], f"{s.version} served ids of the other index"
    before = [s.version for s in served if s.ended < promote_sent]
    on_v2 = [s.version for s in served if promote_done < s.started and s.ended < rollback_sent]
    after = [s.version for s in served if s.started > rolled_back]
    assert len(before) > 20 and set(before) == {"v1"}
    assert len(on_v2) > 20 and set(on_v2) == {"v2"}
    assert len(after) > 20 and set(after) == {"v1"}
    assert 'flywheel_model_swaps_total{outcome="ok"} 3.0' in metrics  # load, promote, rollback
    assert "released model v1" in log and "released model v2" in log
