"""POST /events limits: bodies over 1 MiB get 413 before parsing, and waiting for the bus
never takes the threads that health probes need."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from encoder_server.app import create_app
from services.events import AnyEvent, MemorySink, PublishOutcome
from services.settings import Settings


def click(i: int, **extra: object) -> dict[str, object]:
    return {
        "event_id": f"e{i}",
        "query_id": "q1",
        "action_name": "click",
        "object_id": "p1",
        "position": 1,
        **extra,
    }


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(home=tmp_path), sink=MemorySink())) as test_client:
        yield test_client


def test_a_body_over_a_mebibyte_gets_413_before_parsing(client: TestClient) -> None:
    # 500 events of 2.1 KiB each: every one valid, the batch over the limit (before: 200).
    batch = {"events": [click(i, session_id="s" * 100, client_id="c" * 100) for i in range(500)]}
    for event in batch["events"]:
        event["object_id"] = "p" * 120
        event["pad"] = "x" * 1800  # extra fields are ignored by the model
    body = json.dumps(batch).encode()
    assert len(body) > 1024 * 1024
    response = client.post("/events", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"


def test_a_chunked_body_is_counted_as_it_streams(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"events": ['
        for i in range(2_000):
            yield json.dumps(click(i, pad="x" * 600)).encode() + b","
        yield json.dumps(click(99_999)).encode() + b"]}"

    response = client.post(
        "/events", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413


def test_a_lying_content_length_and_small_bodies(client: TestClient) -> None:
    ok = client.post("/events", json={"events": [click(1)]})
    assert ok.status_code == 200 and ok.json()["accepted"] == 1
    assert client.get("/healthz").status_code == 200


class SlowBus(MemorySink):
    """A bus that takes its time to acknowledge (a Kafka slowing down)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.waiting = threading.Semaphore(0)

    def publish(self, events: Sequence[AnyEvent], timeout_s: float) -> PublishOutcome:
        self.waiting.release()
        self.release.wait(timeout=30)
        return super().publish(events, timeout_s)


def test_events_waiting_for_the_bus_never_starve_health_probes(tmp_path: Path) -> None:
    bus = SlowBus()
    settings = Settings(home=tmp_path)
    posts = 60  # more than the shared pool's 40 threads
    with (
        TestClient(create_app(settings, sink=bus)) as client,
        ThreadPoolExecutor(max_workers=posts) as pool,
        ThreadPoolExecutor(max_workers=3) as prober,
    ):
        pending = [
            pool.submit(client.post, "/events", json={"events": [click(i)]}) for i in range(posts)
        ]
        for _ in range(settings.server.events_workers):
            assert bus.waiting.acquire(timeout=30)  # POST /events now fill their own pool
        probes = [prober.submit(client.get, "/healthz") for _ in range(3)]
        try:
            # Before: 40 waiting POSTs held every thread of the shared pool, so a probe
            # waited for the bus (and a pod restarted). Now it answers while they wait.
            assert [p.result(timeout=10).status_code for p in probes] == [200, 200, 200]
            assert not any(p.done() for p in pending)
        finally:
            bus.release.set()
        assert [p.result(timeout=30).status_code for p in pending] == [200] * posts


def test_taken_requests_are_timed_for_the_latency_slo(tmp_path: Path) -> None:
    """flywheel_events_request_seconds times every request answered 2xx (the events-latency
    SLO); one the spool refused counts against availability instead, not here."""
    from services.metrics import registry_for

    registry = registry_for("search")

    def timed() -> float:
        return registry.get_sample_value("flywheel_events_request_seconds_count") or 0.0

    class Full(MemorySink):
        def publish(self, events: Sequence[AnyEvent], timeout_s: float = 5.0) -> PublishOutcome:
            return PublishOutcome(refused=[e.event_id for e in events if hasattr(e, "event_id")])

    before = timed()
    with TestClient(create_app(Settings(home=tmp_path), sink=MemorySink())) as client:
        assert client.post("/events", json={"events": [click(1), click(2)]}).status_code == 200
    assert timed() == before + 1
    with TestClient(create_app(Settings(home=tmp_path), sink=Full())) as client:
        assert client.post("/events", json={"events": [click(3)]}).status_code == 503
    assert timed() == before + 1
    refused = registry.get_sample_value("flywheel_events_refused_total", {"reason": "backlog_full"})
    assert refused is not None and refused >= 1
