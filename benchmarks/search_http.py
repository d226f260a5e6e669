"""GET /search latency and throughput against a real `flywheel serve` (uvicorn) process.

Indexes the Home Depot titles (54,667) with the bundled model under a bench home (reused on
later runs), starts the server, and drives it from a separate process at a fixed concurrency.

Run: make bench   (or: .venv/bin/python -m benchmarks.search_http [--concurrency 8])
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

from benchmarks.common import bench_data
from services.encoding.package import register_pretrained
from services.indexing import index_products
from services.registry import ModelRegistry
from services.settings import Settings

BENCH_HOME = Path(__file__).resolve().parents[1] / ".flywheel-bench"


def ensure_index(home: Path) -> tuple[str, list[str]]:
    name, products, queries = bench_data()
    settings = Settings(home=home / name)
    registry = ModelRegistry(settings.registry_dir)
    if registry.pointers().production is None:
        card = register_pretrained(registry, "bundled", settings.encoder)
        start = time.perf_counter()
        index_products(settings, card.version, products).close()
        print(f"indexed {len(products)} products in {time.perf_counter() - start:.0f} s")
        registry.set_production(card.version)
    return str(settings.home), queries


async def load(
    base: str, queries: list[str], concurrency: int, seconds: float, mode: str
) -> tuple[list[float], int, float]:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency)

    async def worker(offset: int) -> None:
        nonlocal errors
        i = offset
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=10) as client:
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                r = await client.get(
                    "/search", params={"q": queries[i % len(queries)], "k": 10, "mode": mode}
                )
                latencies.append((time.perf_counter() - start) * 1000)
                errors += r.status_code != 200
                i += concurrency

    start = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return latencies, errors, time.perf_counter() - start


def stage_totals(base: str, mode: str) -> dict[str, tuple[float, float]]:
    """Server-side (sum, count) of each stage's latency histogram for ``mode``."""
    text = httpx.get(f"{base}/metrics", timeout=5).text
    totals: dict[str, list[float]] = {}
    for line in text.splitlines():
        for kind in ("sum", "count"):
            prefix = f"flywheel_search_latency_seconds_{kind}{{"
            if line.startswith(prefix) and f'mode="{mode}"' in line:
                stage = line.split('stage="')[1].split('"')[0]
                totals.setdefault(stage, [0.0, 0.0])[kind == "count"] = float(line.split()[-1])
    return {stage: (v[0], v[1]) for stage, v in totals.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--port", type=int, default=18431)
    parser.add_argument("--modes", default="splade,bm25,hybrid")
    args = parser.parse_args()
    home, queries = ensure_index(BENCH_HOME)
    env = {**os.environ, "FLYWHEEL_HOME": home}
    server = subprocess.Popen(
        [sys.executable, "-m", "flywheel_cli", "serve", "--port", str(args.port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{args.port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        for mode, concurrency in itertools.product(args.modes.split(","), args.concurrency):
            asyncio.run(load(base, queries, concurrency, 3, mode))  # warm-up
            before = stage_totals(base, mode)
            lat, errors, wall = asyncio.run(load(base, queries, concurrency, args.seconds, mode))
            after = stage_totals(base, mode)
            stages = ", ".join(
                f"{stage} {(after[stage][0] - before.get(stage, (0, 0))[0]) * 1000 / n:.2f} ms"
                for stage in ("encode", "retrieve", "total")
                if stage in after and (n := after[stage][1] - before.get(stage, (0, 0))[1])
            )
            print(
                f"GET /search mode={mode} concurrency={concurrency}: "
                f"{len(lat) / wall:.0f} QPS, "
                f"p50 {statistics.median(lat):.1f} ms, p99 {np.percentile(lat, 99):.1f} ms, "
                f"{errors} errors / {len(lat)} requests; server-side mean: {stages}"
            )
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
