"""Never lose, never wedge: searches in their own pool, probes on the event loop, a cap on
paging depth, and nothing internal on the public endpoints.

No real model is needed: a fake routing (encoder and index that block or fail on demand) is
put in the holder of an app whose home has no registry, so these tests are fast.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio.to_thread
import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from typer.testing import CliRunner

from encoder_server.app import create_app
from encoder_server.holder import LoadedModel, ModelHolder, Routing
from flywheel_cli.search_cmd import app as search_cli
from services.errors import RegistryError, SearchIndexError
from services.events import MemorySink
from services.index.base import Hit
from services.index.bm25 import Bm25Encoder
from services.registry import EVENTS, ModelRegistry
from services.settings import Settings
from services.status import collect_status

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class FakeEncoder:
    """A query encoder that blocks until released (a slow ONNX call), counting how many
    encode at once and whether each ran under a request's model lease."""

    def __init__(self, holder: ModelHolder, block: bool = True) -> None:
        self.holder = holder
        self.release = threading.Event()
        if not block:
            self.release.set()
        self.entered = threading.Semaphore(0)
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0
        self.leased: list[bool] = []
        self.threads: set[int] = set()

    def encode_query(self, text: str) -> object:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
            self.leased.append(bool(self.holder._pins))  # a generation is pinned right now
            self.threads.add(threading.get_ident())
        self.entered.release()
        try:
            self.release.wait(timeout=30)
        finally:
            with self.lock:
                self.running -= 1
        return object()


class FakeIndex:
    """Three hits, or the error it was given (an index that went away)."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error

    def search(self, vector: object, **_: Any) -> list[Hit]:
        if self.error is not None:
            raise self.error
        return [Hit(f"p{i}", 1.0 / (i + 1), {"title": f"product {i}"}) for i in range(3)]

    def close(self) -> None:
        return None


def serve_fake(client: TestClient, encoder: FakeEncoder, index: FakeIndex) -> None:
    model = LoadedModel("v1", encoder, Bm25Encoder(), index, 3)  # type: ignore[arg-type]
    holder: ModelHolder = client.app.state.holder  # type: ignore[attr-defined]
    holder.routing = Routing(production=model)


def settings_for(home: Path, token: str | None = TOKEN, **server: Any) -> Settings:
    settings = Settings(home=home)
    settings.server.admin_token = SecretStr(token) if token else None
    for name, value in server.items():
        setattr(settings.server, name, value)
    return settings


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(settings_for(tmp_path), sink=MemorySink())) as test_client:
        yield test_client


# -- 1. searches run off the event loop, in their own bounded pool ----------------------------


def test_probes_answer_while_searches_block_in_their_own_pool(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, search_workers=2)
    with (
        TestClient(create_app(settings, sink=MemorySink())) as client,
        ThreadPoolExecutor(max_workers=4) as shoppers,
        ThreadPoolExecutor(max_workers=2) as prober,
    ):
        encoder = FakeEncoder(client.app.state.holder)  # type: ignore[attr-defined]
        serve_fake(client, encoder, FakeIndex())
        params = {"q": "drill", "mode": "splade"}
        searches = [shoppers.submit(client.get, "/search", params=params) for _ in range(4)]
        try:
            # Before: the first search encoded on the event loop, so nothing else ran.
            for _ in range(2):
                assert encoder.entered.acquire(timeout=10), "searches did not run concurrently"
            started = time.monotonic()
            probes = [prober.submit(client.get, path) for path in ("/healthz", "/readyz")]
            assert [p.result(timeout=5).status_code for p in probes] == [200, 200]
            assert time.monotonic() - started < 2
            time.sleep(0.2)
            assert encoder.most == 2  # the other two wait for the limiter, holding no thread
            assert not any(s.done() for s in searches)
        finally:
            encoder.release.set()
        assert [s.result(timeout=30).status_code for s in searches] == [200] * 4
    assert encoder.leased == [True] * 4  # the work in the thread ran under the request's lease
    assert threading.main_thread().ident not in encoder.threads


# -- 2. health endpoints never wait for a thread ------------------------------------------------


def test_probes_answer_while_the_shared_thread_pool_is_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate, entered = threading.Event(), threading.Semaphore(0)

    def slow_status(*args: Any, **kwargs: Any) -> Any:
        entered.release()
        gate.wait(timeout=30)
        return collect_status(*args, **kwargs)

    monkeypatch.setattr("encoder_server.routes.status.collect_status", slow_status)
    with (
        TestClient(create_app(settings_for(tmp_path), sink=MemorySink())) as client,
        ThreadPoolExecutor(max_workers=3) as admins,
        ThreadPoolExecutor(max_workers=3) as prober,
    ):

        def shrink() -> None:  # the shared pool (Starlette's 40 threads), made small
            anyio.to_thread.current_default_thread_limiter().total_tokens = 2

        client.portal.call(shrink)  # type: ignore[union-attr]
        pending = [admins.submit(client.get, "/status.json", headers=AUTH) for _ in range(3)]
        try:
            for _ in range(2):
                assert entered.acquire(timeout=10)  # every shared thread is now taken
            probes = {p: prober.submit(client.get, p) for p in ("/healthz", "/readyz", "/metrics")}
            # Before: sync routes (and sync dependencies) queued for a shared thread.
            codes = {p: f.result(timeout=5).status_code for p, f in probes.items()}
            assert codes == {"/healthz": 200, "/readyz": 503, "/metrics": 200}  # 503: no model
            assert not any(p.done() for p in pending)
        finally:
            gate.set()
        assert [p.result(timeout=30).status_code for p in pending] == [200] * 3


# -- 3. deep paging is capped -------------------------------------------------------------------


def test_deep_pages_get_400_saying_what_to_do(client: TestClient) -> None:
    deep = client.get("/search", params={"q": "drill", "k": 100, "page": 11})
    assert deep.status_code == 400
    body = deep.json()
    assert body["error"] == "bad_request"
    assert "1000" in body["message"] and "filter" in body["message"]
    # page × k = 1000 is allowed (503 here only because no model is loaded).
    assert client.get("/search", params={"q": "drill", "k": 100, "page": 10}).status_code == 503
    operation = client.get("/openapi.json").json()["paths"]["/search"]["get"]
    page = next(p for p in operation["parameters"] if p["name"] == "page")
    assert "1000" in page["description"]
    assert "1000" in operation["responses"]["400"]["description"]


def test_the_depth_cap_is_a_setting(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    settings.search.max_depth = 50
    with TestClient(create_app(settings, sink=MemorySink())) as client:
        assert client.get("/search", params={"q": "x", "k": 10, "page": 6}).status_code == 400
        assert client.get("/search", params={"q": "x", "k": 10, "page": 5}).status_code == 503


# -- 4. exposure --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/admin/models", "/status", "/status.json"])
def test_operator_pages_need_the_admin_token(tmp_path: Path, path: str) -> None:
    with TestClient(create_app(settings_for(tmp_path, None), sink=MemorySink())) as off:
        refused = off.get(path)
        assert refused.status_code == 403
        assert "FLYWHEEL_SERVER__ADMIN_TOKEN" in refused.json()["message"]
    with TestClient(create_app(settings_for(tmp_path), sink=MemorySink())) as client:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
            response = client.get(path, headers=headers)
            assert response.status_code == 401, headers
            assert response.headers["www-authenticate"] == "Bearer"
        assert client.get(path, headers=AUTH).status_code == 200
        by_query = client.get(path, params={"token": TOKEN})
        wrong_query = client.get(path, params={"token": "wrong"})
        if path.startswith("/status"):  # a browser opens the page with ?token=
            assert by_query.status_code == 200 and wrong_query.status_code == 401
            assert "?token=" in wrong_query.json()["message"]
        else:  # state and model listings take the header only (URLs end up in logs)
            assert by_query.status_code == 401


def test_status_reads_only_the_end_of_the_registry_log(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "registry")
    registry.root.mkdir(parents=True, exist_ok=True)
    line = {"time": "2026-01-01T00:00:00", "action": "promote", "actor": "x" * 200}
    with (registry.root / EVENTS).open("w", encoding="utf-8") as log:
        log.write("not json: the head of a long history must not be read\n")
        for i in range(20_000):  # about 5 MB
            log.write(json.dumps({**line, "n": i}) + "\n")
    status = collect_status(registry, tmp_path / "exports", last=5)
    assert [e["n"] for e in status.timeline] == list(range(19_995, 20_000))


def test_metrics_on_their_own_port(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, metrics_port=9999)
    with TestClient(create_app(settings, sink=MemorySink())) as client:
        assert client.get("/metrics").status_code == 404
        assert client.get("/healthz").status_code == 200
    with TestClient(create_app(settings_for(tmp_path), sink=MemorySink())) as client:
        assert "flywheel_" in client.get("/metrics").text  # unset: on the API port as before


def test_the_metrics_port_setting_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLYWHEEL_SERVER__METRICS_PORT", "9465")
    monkeypatch.setenv("FLYWHEEL_SERVER__SEARCH_WORKERS", "3")
    settings = Settings()
    assert settings.server.metrics_port == 9465 and settings.server.search_workers == 3
    monkeypatch.delenv("FLYWHEEL_SERVER__METRICS_PORT")
    assert Settings().server.metrics_port is None


def test_flywheel_serve_starts_the_metrics_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("FLYWHEEL_HOME", str(tmp_path))
    monkeypatch.setenv("FLYWHEEL_SERVER__METRICS_PORT", str(port))
    scraped: list[str] = []

    def fake_uvicorn_run(app: Any, **kwargs: Any) -> None:
        api = TestClient(app)  # no lifespan: no model, but the routes are there
        assert api.get("/metrics").status_code == 404 and api.get("/healthz").status_code == 200
        scraped.append(httpx.get(f"http://{kwargs['host']}:{port}/metrics", timeout=5).text)

    monkeypatch.setattr("uvicorn.run", fake_uvicorn_run)
    result = CliRunner().invoke(search_cli, ["serve", "--host", "127.0.0.1", "--port", "0"])
    assert result.exit_code == 0, result.output
    assert "flywheel_search_requests_total" in scraped[0]
    with pytest.raises(httpx.TransportError):  # stopped with the server
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1)


def test_public_answers_hide_paths_and_exception_text(tmp_path: Path) -> None:
    # An empty home: loading fails with "No production model in <tmp_path>/registry; ...".
    with TestClient(create_app(settings_for(tmp_path), sink=MemorySink())) as client:
        holder: ModelHolder = client.app.state.holder  # type: ignore[attr-defined]
        assert holder.last_error is not None and str(tmp_path) in holder.last_error
        search = client.get("/search", params={"q": "drill"})
        assert search.status_code == 503
        assert search.json()["error"] == "unavailable"
        assert "No model is loaded yet; retry shortly" in search.json()["message"]
        assert search.headers["retry-after"] == "5"
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["reason_code"] == "no_model"
        for body in (search.text, ready.text):
            assert str(tmp_path) not in body and "registry" not in body
        # Operators still find the cause, with the token.
        models = client.get("/admin/models", headers=AUTH).json()
        assert str(tmp_path) in models["last_error"]
        status = client.get("/status.json", headers=AUTH).json()
        assert "flywheel index" in status["last_error"]
        assert "flywheel index" in client.get("/status", headers=AUTH).text

        # A serving model whose index fails mid-search (e.g. an Edge shard gone).
        hidden = f"{tmp_path}/index/v1/segments"
        failing = FakeIndex(SearchIndexError(f"Cannot read the Edge shard at {hidden}"))
        serve_fake(client, FakeEncoder(holder, block=False), failing)
        broken = client.get("/search", params={"q": "drill", "mode": "splade"})
        assert broken.status_code == 503 and broken.json()["error"] == "unavailable"
        assert hidden not in broken.text and "Edge" not in broken.text
        assert broken.headers["retry-after"] == "1"


def _search_5xx(client: TestClient) -> float:
    line = 'flywheel_search_requests_total{arm="",model_version="",status="5xx"} '
    found = [row for row in client.get("/metrics").text.splitlines() if row.startswith(line)]
    return float(found[0].split()[-1]) if found else 0.0


def test_a_bug_answers_500_without_its_text_and_counts_in_the_sli(tmp_path: Path) -> None:
    app = create_app(settings_for(tmp_path), sink=MemorySink())
    with TestClient(app, raise_server_exceptions=False) as client:
        holder: ModelHolder = client.app.state.holder  # type: ignore[attr-defined]
        bug = FakeIndex(RuntimeError(f"list index out of range at {tmp_path}/index"))
        serve_fake(client, FakeEncoder(holder, block=False), bug)
        before = _search_5xx(client)
        broken = client.get("/search", params={"q": "drill", "mode": "splade"})
        assert broken.status_code == 500 and broken.json()["error"] == "internal_error"
        assert "report it" in broken.json()["message"] and str(tmp_path) not in broken.text
        assert _search_5xx(client) == before + 1  # the availability SLI sees it
        # An error of another route is not a failed search.

        def a_bug() -> list[str]:
            raise ZeroDivisionError("division by zero")

        holder.registry.versions = a_bug  # type: ignore[method-assign]
        assert client.get("/admin/models", headers=AUTH).status_code == 500
        assert _search_5xx(client) == before + 1


def test_admins_still_get_the_error_text(client: TestClient) -> None:
    holder: ModelHolder = client.app.state.holder  # type: ignore[attr-defined]

    def unreadable() -> list[str]:
        raise RegistryError("Cannot read /srv/flywheel/registry/models: permission denied")

    holder.registry.versions = unreadable  # type: ignore[method-assign]
    response = client.get("/admin/models", headers=AUTH)
    assert response.status_code == 503
    assert "/srv/flywheel/registry/models" in response.json()["message"]
