"""GET /search and the operational endpoints, in-process over the real Edge index."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from encoder_server.app import create_app
from services.events import InteractionEvent, MemorySink, PublishOutcome, QueryEvent
from services.settings import Settings
from tests.conftest import IndexedHome

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sink() -> MemorySink:
    return MemorySink()


@pytest.fixture(scope="module")
def client(indexed_home: IndexedHome, sink: MemorySink) -> Iterator[TestClient]:
    with TestClient(create_app(indexed_home.settings, sink=sink)) as test_client:
        yield test_client


def test_search_returns_ranked_attributed_results(client: TestClient, sink: MemorySink) -> None:
    response = client.get("/search", params={"q": "cordless drill", "k": 5, "session_id": "s1"})
    assert response.status_code == 200
    body = response.json()
    assert body["model_version"] == "v1"
    assert body["arm"] == "production"
    assert body["mode"] == "hybrid"  # the default mode (SearchSettings.default_mode)
    assert len(body["results"]) == 5
    assert [r["position"] for r in body["results"]] == [1, 2, 3, 4, 5]
    scores = [r["score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True)
    assert "drill" in body["results"][0]["payload"]["title"].lower()
    assert body["took_ms"] > 0
    served = sink.events[-1]
    assert isinstance(served, QueryEvent)
    assert served.query_id == body["query_id"]
    assert served.results == [r["id"] for r in body["results"]]
    assert served.session_id == "s1"
    assert served.model_version == "v1"


def test_pages_continue_the_ranking(client: TestClient) -> None:
    first = client.get("/search", params={"q": "faucet", "k": 10}).json()["results"]
    second = client.get("/search", params={"q": "faucet", "k": 5, "page": 2}).json()["results"]
    assert [r["id"] for r in second] == [r["id"] for r in first[5:10]]
    assert second[0]["position"] == 6


def test_filters_restrict_results(client: TestClient) -> None:
    params: dict[str, str | int | list[str]] = {
        "q": "drill",
        "k": 20,
        "filter": ["brand:DEWALT", "brand:Ryobi", "price:..60"],
    }
    results = client.get("/search", params=params).json()["results"]
    assert results
    for r in results:
        assert r["payload"]["brand"] in {"DEWALT", "Ryobi"}
        assert r["payload"]["price"] <= 60


@pytest.mark.parametrize("mode", ["bm25", "hybrid"])
def test_other_modes(client: TestClient, mode: str) -> None:
    body = client.get("/search", params={"q": "garden hose", "mode": mode, "k": 3}).json()
    assert body["mode"] == mode
    assert any("hose" in r["payload"]["title"].lower() for r in body["results"])


@pytest.mark.parametrize(
    ("params", "status", "message"),
    [
        ({"q": ""}, 422, "q: String should have at least 1 character"),
        ({"q": "   "}, 422, "q: is blank"),
        ({"q": "a" * 300}, 422, "q: String should have at most 256 characters"),
        ({"q": "x", "k": 0}, 422, "k: Input should be greater than or equal to 1"),
        ({"q": "x", "k": 101}, 422, "k: Input should be less than or equal to 100"),
        ({"q": "x", "k": "ten"}, 422, "valid integer"),
        ({"q": "x", "page": 1000}, 422, "page: Input should be less than or equal to 100"),
        ({"q": "x", "filter": "colour:red"}, 422, "filter.0: Unknown filter field 'colour'"),
        ({"q": "x", "filter": "price:1-5"}, 422, "filter.0: Malformed range"),
        ({"q": "x", "filter": "price:5..1"}, 400, "low bound above its high bound"),
        ({"q": "x", "brand": "DEWALT"}, 400, "Unknown parameter(s) brand"),
        ({"q": "x", "mode": "dense"}, 422, "mode"),
        ({}, 422, "q: Field required"),
    ],
)
def test_bad_input_gets_4xx_saying_what_to_fix(
    client: TestClient, params: dict[str, str | int], status: int, message: str
) -> None:
    response = client.get("/search", params=params)
    assert response.status_code == status
    body = response.json()
    assert message in body["message"]
    assert body["error"] in {"bad_request", "invalid_parameter"}


def test_health_ready_metrics(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["ready"] is True
    assert ready["models"] == [{"version": "v1", "arm": "production", "products": 400}]
    client.get("/search", params={"q": "hammer", "mode": "splade"})
    metrics = client.get("/metrics").text
    assert (
        'flywheel_search_latency_seconds_bucket{le="0.001",mode="splade",stage="encode"}' in metrics
    )
    assert 'flywheel_model_loaded_info{arm="production",model_version="v1"} 1.0' in metrics
    assert "flywheel_search_requests_total" in metrics


def test_openapi_documents_the_search_contract(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    operation = spec["paths"]["/search"]["get"]
    assert {"400", "422", "503", "200"} <= set(operation["responses"])
    assert operation["summary"] == "Search"
    assert "SPLADE" in operation["description"]


def test_unready_without_a_model(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    with TestClient(create_app(settings, sink=MemorySink())) as empty:
        ready = empty.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["reason_code"] == "no_model"  # the error text is for admins only
        response = empty.get("/search", params={"q": "drill"})
        assert response.status_code == 503
        assert "No model is loaded" in response.json()["message"]


def interaction(i: int, **overrides: object) -> dict[str, object]:
    return {
        "event_id": f"e{i}",
        "query_id": "q1",
        "action_name": "click",
        "object_id": "100001",
        "position": 1,
        "session_id": "s1",
        **overrides,
    }


def test_events_are_validated_one_by_one(client: TestClient, sink: MemorySink) -> None:
    before = len(sink.events)
    batch = [
        interaction(1),
        interaction(2, action_name="hover"),
        interaction(3, position=0),
        {k: v for k, v in interaction(4).items() if k != "event_id"},
        interaction(5, note="x" * 70_000),
        interaction(6, type="query"),
        interaction(7, action_name="purchase", position=3),
    ]
    response = client.post("/events", json={"events": batch})
    assert response.status_code == 200
    body = response.json()
    assert body["accepted"] == 2 and body["pending"] == 0
    assert [(r["index"], r["code"]) for r in body["rejected"]] == [
        (1, "unknown_action"),
        (2, "invalid_field"),
        (3, "missing_id"),
        (4, "oversized"),
        (5, "unknown_type"),
    ]
    assert "position" in body["rejected"][1]["reason"]
    stored = sink.events[before:]
    assert [e.event_id for e in stored if isinstance(e, InteractionEvent)] == ["e1", "e7"]


@pytest.mark.parametrize("payload", [{"events": []}, {"events": "x"}, {}, [1]])
def test_malformed_event_batches_get_422(client: TestClient, payload: object) -> None:
    response = client.post("/events", json=payload)
    assert response.status_code == 422
    assert response.json()["message"]


def test_full_backlog_is_refused_with_503(tmp_path: Path) -> None:
    class FullSink(MemorySink):
        def publish(self, events, timeout_s):
            return PublishOutcome(refused=[e.event_id for e in events])

    with TestClient(create_app(Settings(home=tmp_path), sink=FullSink())) as full:
        response = full.post("/events", json={"events": [interaction(1)]})
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        assert response.json()["rejected"][0]["code"] == "backlog_full"
