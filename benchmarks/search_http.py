"""GET /search latency and throughput: Flywheel against a plain FastAPI + eager PyTorch
baseline, on the same model and the same Qdrant index, in one run.

Indexes the Home Depot titles (54,667; a generated catalog without the data) with the bundled
model under a bench home (reused on later runs), then serves it twice, one server at a time
(a Qdrant Edge shard takes one process): ``flywheel serve`` (ONNX Runtime, the full serving
path, each served list logged to an embedded Kafka broker as in production; ``--no-broker``
leaves Kafka unreachable, so events only pile up in the server's bounded backlog) and
:mod:`benchmarks.baseline_app` (eager PyTorch, nothing else). A load generator in
this process drives each at fixed concurrencies over HTTP, per mode, and reads the servers'
own stage histograms (encode, retrieve, total) from ``/metrics`` with
``prometheus_client.parser``. The table at the end puts both side by side with Flywheel's
advantage as ratios (QPS Flywheel/baseline; p50 and p99 baseline/Flywheel: above 1 means
Flywheel is better).

Run: make bench   (or: .venv/bin/python -m benchmarks.search_http [--concurrency 1 8])
``--smoke`` (make bench-smoke, CI): a fresh home with 500 generated products and a few
seconds per measurement; exits 1 if a request fails or a stage is missing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.baseline_app import METRIC as BASELINE_METRIC
from benchmarks.common import bench_data, machine
from services.indexing import bootstrap_home
from services.kafka.broker import EmbeddedBroker, ensure_topics
from services.net import free_port
from services.registry import ModelRegistry
from services.settings import Settings

BENCH_HOME = Path(__file__).resolve().parents[1] / ".flywheel-bench"
FLYWHEEL_METRIC = "flywheel_search_latency_seconds"
STAGES = ("encode", "retrieve", "total")


@dataclass(frozen=True)
class Server:
    """One system under test: how to start it and which histogram holds its stage times."""

    name: str
    command: list[str]
    metric: str


@dataclass(frozen=True)
class Measured:
    """One (system, mode, concurrency) measurement."""

    qps: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int
    stages_ms: dict[str, float]


def ensure_index(home: Path, *, generated: bool = False) -> tuple[str, list[str]]:
    """The bench home for the data (indexed on first use) and the queries to send."""
    name, products, queries = bench_data(500 if generated else 20000, generated=generated)
    settings = Settings(home=home / name)
    registry = ModelRegistry(settings.registry_dir)
    production = registry.pointers().production
    if production is not None and registry.index_record(production) is None:
        # A home from before indexes were stamped: servers refuse it, so build it afresh.
        shutil.rmtree(settings.home)
        production = None
    if production is None:
        start = time.perf_counter()
        bootstrap_home(settings, products, model="bundled")
        print(
            f"registered the bundled model and indexed {len(products)} {name} products "
            f"in {time.perf_counter() - start:.0f} s"
        )
    return str(settings.home), queries


async def load(
    base: str, queries: list[str], concurrency: int, seconds: float, mode: str
) -> tuple[list[float], int, float]:
    """Closed-loop load: ``concurrency`` clients, each sending its next query on an answer."""
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency)

    async def worker(offset: int) -> None:
        nonlocal errors
        i = offset
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:
            while time.perf_counter() < deadline:
                params: dict[str, str | int] = {
                    "q": queries[i % len(queries)],
                    "k": 10,
                    "mode": mode,
                }
                i += concurrency
                start = time.perf_counter()
                try:
                    r = await client.get("/search", params=params)
                except httpx.TransportError:  # a timeout or a dropped connection: an error
                    errors += 1
                    continue
                latencies.append((time.perf_counter() - start) * 1000)
                errors += r.status_code != 200

    start = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return latencies, errors, time.perf_counter() - start


def stage_totals(metrics_text: str, metric: str, mode: str) -> dict[str, tuple[float, float]]:
    """Stage -> (sum of seconds, count) of histogram ``metric`` for ``mode``, from the
    Prometheus text exposition format."""
    totals: dict[str, list[float]] = {}
    for family in text_string_to_metric_families(metrics_text):
        if family.name != metric:
            continue
        for sample in family.samples:
            if sample.labels.get("mode") != mode:
                continue
            kind = sample.name.removeprefix(metric)
            if kind in ("_sum", "_count"):
                totals.setdefault(sample.labels["stage"], [0.0, 0.0])[kind == "_count"] += (
                    sample.value
                )
    return {stage: (v[0], v[1]) for stage, v in totals.items()}


def scrape(base: str, metric: str, mode: str) -> dict[str, tuple[float, float]]:
    return stage_totals(httpx.get(f"{base}/metrics", timeout=5).text, metric, mode)


@contextmanager
def running(server: Server, env: dict[str, str], base: str) -> Iterator[None]:
    """Start ``server``, wait until /readyz answers, stop it at the end."""
    proc = subprocess.Popen(
        server.command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"{server.name} exited on start: {proc.stderr.read()[-2000:]}")  # type: ignore[union-attr]
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"{server.name} did not become ready in 300 s")
            time.sleep(0.2)
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def measure(
    base: str, server: Server, queries: list[str], mode: str, concurrency: int, seconds: float
) -> Measured:
    asyncio.run(load(base, queries, concurrency, min(3.0, seconds / 2), mode))  # warm-up
    before = scrape(base, server.metric, mode)
    lat, errors, wall = asyncio.run(load(base, queries, concurrency, seconds, mode))
    after = scrape(base, server.metric, mode)
    stages = {}
    for stage in STAGES:
        total, count = after.get(stage, (0.0, 0.0))
        total0, count0 = before.get(stage, (0.0, 0.0))
        if count > count0:
            stages[stage] = (total - total0) * 1000 / (count - count0)
    return Measured(
        qps=len(lat) / wall,
        p50_ms=statistics.median(lat),
        p99_ms=float(np.percentile(lat, 99)),
        errors=errors,
        requests=len(lat),
        stages_ms=stages,
    )


def stage_text(m: Measured) -> str:
    return " / ".join(f"{m.stages_ms[s]:.2f}" if s in m.stages_ms else "–" for s in STAGES)


def side_by_side(results: dict[tuple[str, str, int], Measured], names: list[str]) -> str:
    """A Markdown table: both systems per (mode, concurrency), with Flywheel's advantage."""
    flywheel, baseline = names
    lines = [
        f"| mode | clients | {flywheel} QPS | p50 ms | p99 ms | {baseline} QPS | p50 ms | "
        "p99 ms | QPS × | p50 × | p99 × | server encode / retrieve / total ms: "
        f"{flywheel} | {baseline} |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    keys = sorted({(mode, c) for _, mode, c in results}, key=lambda k: (k[0], k[1]))
    for mode, c in keys:
        f, b = results[(flywheel, mode, c)], results[(baseline, mode, c)]
        lines.append(
            f"| {mode} | {c} | {f.qps:,.0f} | {f.p50_ms:.1f} | {f.p99_ms:.1f} | {b.qps:,.0f} | "
            f"{b.p50_ms:.1f} | {b.p99_ms:.1f} | {f.qps / b.qps:.2f} | {b.p50_ms / f.p50_ms:.2f} | "
            f"{b.p99_ms / f.p99_ms:.2f} | {stage_text(f)} | {stage_text(b)} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--port", type=int, default=0, help="servers' port (0: a free one)")
    parser.add_argument("--modes", default="splade,bm25,hybrid")
    parser.add_argument("--smoke", action="store_true", help="quick run on a fresh home (CI)")
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=0,
        help="the baseline's PyTorch threads (0: PyTorch's default, all cores)",
    )
    parser.add_argument(
        "--no-broker",
        dest="broker",
        action="store_false",
        help="no Kafka for Flywheel's query events (they wait in its backlog)",
    )
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="flywheel-bench-")))
        if args.smoke:
            args.seconds, args.concurrency = min(args.seconds, 1.5), [2]
        home, queries = ensure_index(scratch if args.smoke else BENCH_HOME, generated=args.smoke)
        env = {**os.environ, "FLYWHEEL_HOME": home}
        if args.broker:
            broker = stack.enter_context(EmbeddedBroker(log_path=scratch / "broker.log").start())
            ensure_topics(broker.bootstrap_servers, Settings().kafka.topics())
            env["FLYWHEEL_KAFKA__BOOTSTRAP_SERVERS"] = broker.bootstrap_servers
        else:
            # A closed port, never another process's broker on the default one.
            env["FLYWHEEL_KAFKA__BOOTSTRAP_SERVERS"] = f"127.0.0.1:{free_port()}"
        failures = run(args, env, queries)
    if failures:
        raise SystemExit("\n".join(failures))


def run(args: argparse.Namespace, env: dict[str, str], queries: list[str]) -> list[str]:
    """Measure both servers; print each figure, then the side-by-side table; the failures."""
    home = env["FLYWHEEL_HOME"]
    port = args.port or free_port()
    base = f"http://127.0.0.1:{port}"
    python = sys.executable
    servers = [
        Server(
            "Flywheel",
            [python, "-m", "flywheel_cli", "serve", "--port", str(port)],
            FLYWHEEL_METRIC,
        ),
        Server(
            "baseline",
            [
                *(python, "-m", "benchmarks.baseline_app", "--home", home, "--port", str(port)),
                *("--threads", str(args.torch_threads)),
            ],
            BASELINE_METRIC,
        ),
    ]
    kafka = "embedded broker" if args.broker else "none (backlog)"
    threads = args.torch_threads or f"default ({os.cpu_count()})"
    print(
        f"{machine()}; load average {os.getloadavg()[0]:.1f} at the start; load generator on the "
        f"same machine; Kafka: {kafka}; baseline PyTorch threads: {threads}; Flywheel ONNX "
        f"Runtime threads per query: {Settings().encoder.query_threads}; home: {home}"
    )
    results: dict[tuple[str, str, int], Measured] = {}
    failures = []
    for server in servers:
        with running(server, env, base):
            for mode, concurrency in itertools.product(args.modes.split(","), args.concurrency):
                m = measure(base, server, queries, mode, concurrency, args.seconds)
                results[(server.name, mode, concurrency)] = m
                print(
                    f"{server.name} GET /search mode={mode} concurrency={concurrency}: "
                    f"{m.qps:.0f} QPS, p50 {m.p50_ms:.1f} ms, p99 {m.p99_ms:.1f} ms, "
                    f"{m.errors} errors / {m.requests} requests; server-side mean encode / "
                    f"retrieve / total: {stage_text(m)} ms",
                    flush=True,
                )
                if m.errors or not m.requests or set(m.stages_ms) != set(STAGES):
                    failures.append(f"{server.name} {mode}: {m}")
    print()
    print(side_by_side(results, [s.name for s in servers]))
    return failures


if __name__ == "__main__":
    main()
