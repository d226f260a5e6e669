"""``flywheel demo``: index a generated catalog, serve it, and show live searches."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Annotated

import httpx
import typer
import uvicorn
from rich.table import Table

from encoder_server.app import create_app
from flywheel_cli.main import app, console, index
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


@app.command()
def demo(
    products: Annotated[int, typer.Option(help="Size of the generated catalog.")] = 2000,
    port: Annotated[int, typer.Option(help="Port of the search service.")] = 8000,
    serve: Annotated[bool, typer.Option(help="Keep serving after the sample searches.")] = True,
) -> None:
    """Index a generated catalog with the bundled SPLADE model and serve GET /search."""
    settings = Settings()
    if ModelRegistry(settings.registry_dir).pointers().production is None:
        catalog = write_catalog_jsonl(
            generate_catalog(products), settings.home / "demo" / "catalog.jsonl"
        )
        index(catalog=catalog, id_column=None, text_column=None, model=None)
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=base, timeout=10) as client:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if client.get("/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        table = Table("query", "top results", "model", "ms", title=f"GET {base}/search")
        for q in SAMPLE_QUERIES:
            body = client.get("/search", params={"q": q, "k": 3}).raise_for_status().json()
            titles = "\n".join(r["payload"].get("title", r["id"]) for r in body["results"])
            table.add_row(q, titles, body["model_version"], f"{body['took_ms']:.1f}")
        console.print(table)
    if serve:
        console.print(f"serving on {base}/search?q=… (docs at {base}/docs); Ctrl-C stops")
        with contextlib.suppress(KeyboardInterrupt):
            thread.join()
    server.should_exit = True
    thread.join(timeout=10)
