"""``flywheel demo``: the whole loop on one machine with embedded components.

Starts the Kafka-compatible broker, the ingest and the search service, indexes a generated
catalog with the bundled SPLADE model, then searches and clicks like a storefront would and
shows where the events landed.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Annotated

import httpx
import typer
import uvicorn
from prometheus_client import REGISTRY
from rich.table import Table

from encoder_server.app import create_app
from feedback_ingest.service import run_ingest, store_path
from flywheel_cli.main import app, console, index
from services.kafka.broker import EmbeddedBroker, ensure_topics
from services.registry import ModelRegistry
from services.settings import Settings
from services.synthetic import generate_catalog, write_catalog_jsonl

SAMPLE_QUERIES = [
    "cordless drill",
    "brushed nickel kitchen faucet",
    "led bulb",
    "garden hose 10 ft",
    "angle bracket",
]


def _wait_ready(client: httpx.Client, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            if client.get("/readyz").status_code == 200:
                return
        time.sleep(0.2)
    raise typer.Exit(code=1)


def _ingested() -> float:
    """Events this process's ingest has read so far (from its Prometheus counters)."""
    return sum(
        sample.value
        for metric in REGISTRY.collect()
        if metric.name == "flywheel_events_ingested"
        for sample in metric.samples
        if sample.name.endswith("_total")
    )


def _wait_ingested(expected: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while _ingested() < expected and time.monotonic() < deadline:
        time.sleep(0.2)


def _shop(client: httpx.Client) -> Table:
    """Search like a storefront and click the second result of every list."""
    table = Table("query", "top results", "model", "ms", title="GET /search")
    for n, q in enumerate(SAMPLE_QUERIES):
        body = client.get("/search", params={"q": q, "k": 3, "session_id": "demo"}).json()
        titles = "\n".join(r["payload"].get("title", r["id"]) for r in body["results"])
        table.add_row(q, titles, body["model_version"], f"{body['took_ms']:.1f}")
        events = [
            {
                "event_id": f"demo-{n}-imp-{r['position']}",
                "query_id": body["query_id"],
                "action_name": "impression",
                "object_id": r["id"],
                "position": r["position"],
            }
            for r in body["results"]
        ]
        second = body["results"][1]
        events.append(
            {
                "event_id": f"demo-{n}-click",
                "query_id": body["query_id"],
                "action_name": "click",
                "object_id": second["id"],
                "position": 2,
            }
        )
        client.post("/events", json={"events": events}).raise_for_status()
    _wait_ingested(len(SAMPLE_QUERIES) * 5)  # each list: the query, 3 impressions, 1 click
    return table


@app.command()
def demo(
    products: Annotated[int, typer.Option(help="Size of the generated catalog.")] = 2000,
    port: Annotated[int, typer.Option(help="Port of the search service.")] = 8000,
    serve: Annotated[bool, typer.Option(help="Keep serving after the sample session.")] = True,
) -> None:
    """Run broker, ingest and search on a generated catalog, and shop a little."""
    settings = Settings()
    with contextlib.ExitStack() as stack:
        if not settings.kafka.bootstrap_servers:
            broker = stack.enter_context(EmbeddedBroker().start())
            settings.kafka.bootstrap_servers = broker.bootstrap_servers
        ensure_topics(settings.kafka.bootstrap(), settings.kafka.topics())
        if ModelRegistry(settings.registry_dir).pointers().production is None:
            catalog = write_catalog_jsonl(
                generate_catalog(products), settings.home / "demo" / "catalog.jsonl"
            )
            index(catalog=catalog, id_column=None, text_column=None, model=None)
        stop = threading.Event()
        settings.ingest.metrics_port = 0
        ingest = threading.Thread(
            target=run_ingest, args=(settings,), kwargs={"stop": stop}, name="ingest", daemon=True
        )
        ingest.start()
        stack.callback(ingest.join, 30)
        stack.callback(stop.set)
        server = uvicorn.Server(
            uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=10) as client:
            _wait_ready(client)
            console.print(_shop(client))
        if serve:
            console.print(f"serving on {base}/search?q=… (docs: {base}/docs); Ctrl-C stops")
            with contextlib.suppress(KeyboardInterrupt):
                thread.join()
        server.should_exit = True
        thread.join(timeout=10)
    console.print(f"events are in {store_path(settings)}; snapshots: `flywheel snapshot`")
