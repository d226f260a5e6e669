"""`flywheel serve` as a real uvicorn process: search over HTTP, served lists recorded."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.conftest import IndexedHome

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_search_over_http(server_url: str, indexed_home: IndexedHome) -> None:
    with httpx.Client(base_url=server_url, timeout=10) as client:
        body = client.get("/search", params={"q": "kitchen faucet", "k": 4}).json()
        assert body["model_version"] == indexed_home.version
        assert len(body["results"]) == 4
        assert client.get("/healthz").status_code == 200
        assert client.get("/search", params={"q": ""}).status_code == 422
        assert "flywheel_search_requests_total" in client.get("/metrics").text
        docs = client.get("/docs")
        assert docs.status_code == 200 and "swagger" in docs.text.lower()
    served = indexed_home.settings.home / "events" / "served.jsonl"
    lines = [json.loads(line) for line in served.read_text().splitlines()]
    mine = [e for e in lines if e["query_id"] == body["query_id"]]
    assert len(mine) == 1
    assert mine[0]["results"] == [r["id"] for r in body["results"]]
