"""The baseline that ``benchmarks.search_http`` measures Flywheel against: a plain FastAPI
service that encodes queries with eager PyTorch.

It serves the same model version from the same Qdrant index as ``flywheel serve`` and answers
the same ``GET /search?q=&k=&mode=`` (``splade``, ``bm25``, ``hybrid`` with the same
fusion), but with none of Flywheel's serving path: no ONNX Runtime (the masked LM runs in
eager PyTorch through :class:`~services.encoding.torch_splade.TorchSpladeEncoder`, with
PyTorch's default threads unless ``--threads`` says otherwise), no model holder or hot swap,
no validation beyond FastAPI's, no query logging to Kafka, no routing, no Flywheel middleware
or metrics. Its handler is
``async`` and runs one search at a time on the event loop, while Flywheel runs up to
``server.search_workers`` at once in its own thread pool: the comparison includes that
concurrency model.

Its own ``/metrics`` exposes ``baseline_search_latency_seconds{stage,mode}`` (stages
``encode``, ``retrieve``, ``total``) from a private registry, in the Prometheus text format
that Flywheel's ``/metrics`` uses, so one parser reads both.

Run alone: ``python -m benchmarks.baseline_app --home .flywheel-bench/homedepot --port 18432``
"""

from __future__ import annotations

import argparse
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Literal

import uvicorn
from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest

from services.encoding.torch_splade import TorchSpladeEncoder
from services.index.bm25 import Bm25Encoder
from services.index.store import open_index
from services.registry import ModelRegistry
from services.settings import Settings

METRIC = "baseline_search_latency_seconds"
"""The baseline's stage histogram (not a Flywheel metric: it lives in a private registry)."""
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def create_baseline_app(settings: Settings, version: str | None = None) -> FastAPI:
    """The baseline service over ``version`` (default: production) of ``settings.home``."""
    registry = ModelRegistry(settings.registry_dir)
    version = version or registry.pointers().production
    if version is None:
        raise SystemExit(f"no production version under {settings.home}; index a catalog first")
    card = registry.card(version)
    encoder = TorchSpladeEncoder.from_pretrained(
        str(registry.path(version)),
        max_query_tokens=card.max_query_tokens,
        max_doc_tokens=card.max_doc_tokens,
        device="cpu",
    )
    bm25 = Bm25Encoder()
    index = open_index(settings, version)
    fusion = settings.search.hybrid_fusion()
    metrics = CollectorRegistry()
    latency = Histogram(
        METRIC,
        "Baseline search latency by stage.",
        ["stage", "mode"],
        buckets=BUCKETS,
        registry=metrics,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        index.close()

    app = FastAPI(title="baseline: FastAPI + eager PyTorch", lifespan=lifespan)

    @app.get("/search")
    async def search(
        q: str, k: int = 10, mode: Literal["splade", "bm25", "hybrid"] = "hybrid"
    ) -> dict[str, object]:
        started = time.perf_counter()
        splade = encoder.encode_query(q) if mode != "bm25" else None
        terms = bm25.encode_query(q) if mode != "splade" else None
        encoded = time.perf_counter()
        if splade is not None and terms is not None:
            hits = index.hybrid_search(splade, terms, limit=k, fusion=fusion)
        elif splade is not None:
            hits = index.search(splade, using="splade", limit=k)
        else:
            assert terms is not None
            hits = index.search(terms, using="bm25", limit=k)
        done = time.perf_counter()
        latency.labels(stage="encode", mode=mode).observe(encoded - started)
        latency.labels(stage="retrieve", mode=mode).observe(done - encoded)
        latency.labels(stage="total", mode=mode).observe(done - started)
        return {
            "model_version": version,
            "results": [{"id": h.product_id, "score": h.score} for h in hits],
        }

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ready"}

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics), media_type=CONTENT_TYPE_LATEST)

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", type=Path, required=True, help="FLYWHEEL_HOME to serve")
    parser.add_argument("--port", type=int, default=18432)
    parser.add_argument("--version", default=None, help="model version (default: production)")
    parser.add_argument(
        "--threads", type=int, default=0, help="PyTorch intra-op threads (0: PyTorch's default)"
    )
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    app = create_baseline_app(Settings(home=args.home), args.version)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
