"""`flywheel serve` as a real uvicorn process: search over HTTP, events through real Kafka."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from kafka import KafkaConsumer
from kafka.structs import TopicPartition

from encoder_server.app import create_app
from services.kafka.broker import EmbeddedBroker
from services.kafka.config import KafkaSettings
from services.net import free_port
from services.settings import Settings
from tests.conftest import IndexedHome

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def read_topic(
    bootstrap: str, topic: str, want: int, timeout_s: float = 15
) -> list[dict[str, object]]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    found: list[dict[str, object]] = []
    deadline = time.monotonic() + timeout_s
    while len(found) < want and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            found.extend(json.loads(r.value) for r in records)
    consumer.close()
    return found


def test_search_and_events_over_http(
    server_url: str, indexed_home: IndexedHome, broker: EmbeddedBroker
) -> None:
    with httpx.Client(base_url=server_url, timeout=10) as client:
        body = client.get("/search", params={"q": "kitchen faucet", "k": 4}).json()
        assert body["model_version"] == indexed_home.version
        assert len(body["results"]) == 4
        assert client.get("/healthz").status_code == 200
        assert client.get("/search", params={"q": ""}).status_code == 422
        assert "flywheel_search_requests_total" in client.get("/metrics").text
        docs = client.get("/docs")
        assert docs.status_code == 200 and "swagger" in docs.text.lower()
        click = {
            "event_id": "ev-1",
            "query_id": body["query_id"],
            "action_name": "click",
            "object_id": body["results"][1]["id"],
            "position": 2,
        }
        posted = client.post("/events", json={"events": [click]}).json()
        assert posted == {"accepted": 1, "pending": 0, "rejected": []}
        assert client.get("/readyz").json()["event_backlog"] == 0
    topic = KafkaSettings().topic
    events = read_topic(broker.bootstrap_servers, topic, want=1_000)
    mine = [e for e in events if e["query_id"] == body["query_id"]]
    assert [e["type"] for e in mine] == ["query", "interaction"]
    assert mine[0]["results"] == [r["id"] for r in body["results"]]
    assert mine[1]["event_id"] == "ev-1"


def test_searches_are_served_while_kafka_is_down(indexed_home: IndexedHome, tmp_path: Path) -> None:
    home = tmp_path / "home"
    shutil.copytree(indexed_home.settings.home / "registry", home / "registry")
    shutil.copytree(indexed_home.settings.home / "index", home / "index")
    settings = Settings(home=home)
    settings.kafka.bootstrap_servers = f"127.0.0.1:{free_port('127.0.0.1')}"  # nothing listens
    settings.server.events_ack_timeout_s = 0.2
    with TestClient(create_app(settings)) as client:
        started = time.monotonic()
        for q in ["drill", "faucet", "hose"]:
            assert client.get("/search", params={"q": q}).status_code == 200
        assert time.monotonic() - started < 2
        click = {
            "event_id": "ev-9",
            "query_id": "q",
            "action_name": "click",
            "object_id": "1",
            "position": 1,
        }
        posted = client.post("/events", json={"events": [click]}).json()
        assert posted["accepted"] == 0 and posted["pending"] == 1
        ready = client.get("/readyz").json()
        assert ready["ready"] is True
        assert ready["event_backlog"] == 4  # three served lists and the click, all kept
        assert "flywheel_event_backlog 4.0" in client.get("/metrics").text
