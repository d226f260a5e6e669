"""benchmarks.search_http: the FastAPI + eager PyTorch baseline answers like Flywheel, and
both servers' stage histograms are read with prometheus_client's parser."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from benchmarks.baseline_app import METRIC, create_baseline_app
from benchmarks.search_http import FLYWHEEL_METRIC, STAGES, side_by_side, stage_totals
from encoder_server.app import create_app
from services.events import MemorySink
from services.settings import Settings
from tests.conftest import IndexedHome

pytestmark = pytest.mark.slow

QUERIES = ("cordless drill", "brass door hinge", "garden hose")


def top(client: TestClient, query: str, mode: str) -> list[str]:
    response = client.get("/search", params={"q": query, "k": 5, "mode": mode})
    assert response.status_code == 200, response.text
    return [r["id"] for r in response.json()["results"]]


def test_the_baseline_serves_the_same_model_and_index(
    indexed_home: IndexedHome, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    shutil.copytree(indexed_home.settings.home, home)  # a Qdrant Edge shard takes one handle
    settings = Settings(home=home)
    with TestClient(create_baseline_app(settings)) as client:
        baseline = {(q, m): top(client, q, m) for q in QUERIES for m in ("splade", "hybrid")}
        bm25 = top(client, "cordless drill", "bm25")
        text = client.get("/metrics").text
    for mode in ("splade", "hybrid"):
        stages = stage_totals(text, METRIC, mode)
        assert set(stages) == set(STAGES)
        assert all(count == len(QUERIES) for _, count in stages.values())
        assert stages["total"][0] >= stages["encode"][0] > 0
    assert stage_totals(text, METRIC, "bm25")["total"][1] == 1
    assert len(bm25) == 5
    with TestClient(create_app(settings, sink=MemorySink())) as client:
        flywheel = {key: top(client, *key) for key in baseline}
        stages = stage_totals(client.get("/metrics").text, FLYWHEEL_METRIC, "hybrid")
    # Eager PyTorch and the ONNX export encode alike: the same products come back.
    assert flywheel == baseline
    assert set(stages) == set(STAGES) and stages["total"][1] >= len(QUERIES)


def test_stage_totals_reads_only_the_asked_metric_and_mode() -> None:
    text = (
        "# HELP x_seconds t\n# TYPE x_seconds histogram\n"
        'x_seconds_bucket{le="+Inf",mode="hybrid",stage="encode"} 4.0\n'
        'x_seconds_sum{mode="hybrid",stage="encode"} 0.5\n'
        'x_seconds_count{mode="hybrid",stage="encode"} 4.0\n'
        'x_seconds_sum{mode="splade",stage="encode"} 9.0\n'
        'x_seconds_count{mode="splade",stage="encode"} 9.0\n'
        "# HELP y_seconds t\n# TYPE y_seconds histogram\n"
        'y_seconds_sum{mode="hybrid",stage="encode"} 7.0\n'
        'y_seconds_count{mode="hybrid",stage="encode"} 7.0\n'
    )
    assert stage_totals(text, "x_seconds", "hybrid") == {"encode": (0.5, 4.0)}
    assert stage_totals(text, "x_seconds", "bm25") == {}


def test_side_by_side_puts_flywheel_advantage_in_ratios() -> None:
    from benchmarks.search_http import Measured

    stages = {"encode": 1.0, "retrieve": 1.0, "total": 2.5}
    fast = Measured(qps=200, p50_ms=5, p99_ms=10, errors=0, requests=4000, stages_ms=stages)
    slow = Measured(qps=50, p50_ms=20, p99_ms=40, errors=0, requests=1000, stages_ms=stages)
    table = side_by_side(
        {("Flywheel", "hybrid", 8): fast, ("baseline", "hybrid", 8): slow}, ["Flywheel", "baseline"]
    )
    row = table.splitlines()[-1]
    assert row.startswith(
        "| hybrid | 8 | 200 | 5.0 | 10.0 | 50 | 20.0 | 40.0 | 4.00 | 4.00 | 4.00 |"
    )
