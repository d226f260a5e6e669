"""A real Prometheus scraping real Flywheel processes: every dashboard query, recording rule
and alert expression runs without error and returns data.

The setup is the flywheel in small: ``flywheel serve`` (v1 production, v2 canary for half the
sessions) and ``flywheel ingest`` on one home and a private topic of the session broker,
shoppers searching and clicking, the canary controller inside ``flywheel retrain --every``
promoting v2, the retrainer then ending a run as skipped, a second retrainer failing on an
empty home, and one small exporter for what a 20-second run cannot produce on its own: a
real offline evaluation (flywheel_offline_ndcg_at_10), exported with the retrainer's registry.
The closed label sets of gate and canary decisions are exported at 0 (no gate ran, no rollback
happened) by the retrainers and the controller themselves.

Prometheus (the binary on PATH, as `make system-deps` installs it) scrapes every second with
deploy/prometheus/prometheus.yml's jobs and rule files, every target labelled with one
namespace as a Kubernetes ServiceMonitor would (and no cluster, as in a single cluster); the
test then evaluates every expression over the run with /api/v1/query_range, as Grafana
would: each dashboard query twice, with the dashboard's variables set to All and with the
namespace picked, and each recording rule both as its expression and as the series it
recorded for that namespace.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kafka import KafkaProducer

from services.catalog_store import save_products
from services.encoding.package import register_pretrained
from services.indexing import index_products
from services.kafka.broker import EmbeddedBroker, ensure_topics
from services.net import free_port
from services.products import Product
from services.registry import ModelRegistry
from services.settings import Settings
from services.synthetic import generate_catalog
from tests.integration.conftest import start_server, stop_server
from tests.observability.promql import (
    PROMETHEUS_CONFIG,
    RULE_FILES,
    STANDARD_SERIES,
    Expr,
    all_expressions,
    all_values,
    dashboards,
    metric_selectors,
    signals,
    with_grafana_macros,
    with_variables,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PROMETHEUS = shutil.which("prometheus")

# The namespace every scrape target is labelled with (see the module docstring).
NAMESPACE = "flywheel-it"

# Jobs of prometheus.yml this test runs no target for → the job it scrapes instead. Retrainer
# runs push to a Pushgateway there; here the long-lived `flywheel retrain --every` processes
# serve their metrics and are scraped directly under the job their pushes carry (as
# k8s/base/monitoring.yaml's retrainer ServiceMonitor does).
SCRAPED_INSTEAD = {"flywheel-pushgateway": "flywheel-retrainer"}

# Panels whose data this run does not produce, and why: their queries must still run.
NOT_PRODUCED = {
    "Interleaved lists by outcome for the canary": "canary sessions see the canary's own "
    "lists here (FLYWHEEL_SEARCH__INTERLEAVING=false), so nothing is interleaved",
    "Interleaving win share of the canary": "as above",
}

# Stands in for the evaluation and gate half of the retrainer (see the module docstring).
EXPORTER = """
import sys, time
from services import metrics
from services.evaluation.protocol import evaluate_dataset
from services.settings import Settings
from services.synthetic import generate_catalog, generate_labelled_set

labelled = generate_labelled_set(generate_catalog(120, seed=5))
evaluate_dataset(Settings(), labelled, ["splade"], model=sys.argv[2], queries=40)
metrics.start_metrics_server("retrainer", int(sys.argv[1]), addr="127.0.0.1")
while True:
    time.sleep(3600)
"""


@dataclass(frozen=True)
class CanaryHome:
    home: Path
    products: list[Product]
    production: str
    canary: str


@pytest.fixture(scope="module")
def canary_home(tmp_path_factory: pytest.TempPathFactory) -> CanaryHome:
    """v1 production and v2 (the same bundled weights, its own index) canary for 50%."""
    home = tmp_path_factory.mktemp("prometheus-home")
    settings = Settings(home=home)
    registry = ModelRegistry(settings.registry_dir)
    products = generate_catalog(200, seed=11)
    save_products(products, home / "catalog")
    versions = []
    for _ in range(2):
        card = register_pretrained(registry, "bundled", settings.encoder)
        index_products(settings, card.version, products).close()
        versions.append(card.version)
    registry.set_production(versions[0])
    registry.set_canary(versions[1], 0.5, force=True)  # a copy of v1: never gated
    return CanaryHome(home, products, versions[0], versions[1])


@dataclass
class Processes:
    """Child processes with their logs in files; stopped in reverse order."""

    logs: Path
    running: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("wb")
        proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.running.append((name, proc))
        return proc

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.is_file() else ""

    def check_alive(self) -> None:
        for name, proc in self.running:
            assert proc.poll() is None, f"{name} exited with {proc.returncode}:\n{self.log(name)}"

    def stop_all(self) -> None:
        for _, proc in reversed(self.running):
            if proc.poll() is None:
                proc.terminate()
        for _, proc in reversed(self.running):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    running = Processes(tmp_path)
    try:
        yield running
    finally:
        running.stop_all()


def wait_for(what: str, check: Callable[[], bool], timeout_s: float, procs: Processes) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        procs.check_alive()
        try:
            if check():
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    logs = "\n".join(f"--- {name}\n{procs.log(name)}" for name, _ in procs.running)
    raise AssertionError(f"timed out waiting for {what}\n{logs}")


class Prometheus:
    def __init__(self, url: str) -> None:
        self.client = httpx.Client(base_url=url, timeout=10)

    def query(self, expr: str) -> list[dict[str, Any]]:
        body = self.client.get("/api/v1/query", params={"query": expr}).json()
        assert body["status"] == "success", f"{expr}: {body}"
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def query_range(self, expr: str, start: float, end: float) -> tuple[str | None, int]:
        """(error or None, series returned) of a range query at a 1 s step."""
        response = self.client.get(
            "/api/v1/query_range",
            params={"query": expr, "start": start, "end": end, "step": "1s"},
        )
        body = response.json()
        if body.get("status") != "success":
            return f"{body.get('errorType')}: {body.get('error')}", 0
        return None, len(body["data"]["result"])


def prometheus_config(targets: dict[str, list[str]]) -> dict[str, Any]:
    """deploy/prometheus/prometheus.yml with local targets in namespace ``NAMESPACE``, a 1 s
    scrape and evaluation interval and absolute rule file paths."""
    config: dict[str, Any] = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config["rule_files"] = [str(path) for path in RULE_FILES]
    jobs = []
    for configured in config["scrape_configs"]:
        job = dict(configured)
        if job["job_name"] in SCRAPED_INSTEAD and job["job_name"] not in targets:
            job = {"job_name": SCRAPED_INSTEAD[job["job_name"]]}
        job.pop("scrape_interval", None)
        job.pop("scrape_timeout", None)
        addresses = targets.pop(job["job_name"])
        job["static_configs"] = [{"targets": addresses, "labels": {"namespace": NAMESPACE}}]
        jobs.append(job)
    assert not targets, f"no such jobs in prometheus.yml: {sorted(targets)}"
    config["scrape_configs"] = jobs
    return config


def shop(
    client: httpx.Client, queries: list[str], seconds: float, counter: Iterator[int]
) -> dict[str, int]:
    """Search and interact for ``seconds`` (bounded): impressions for the top 5, a click on
    the first result (so both arms score alike and the controller can decide), now and then
    an add-to-cart or a purchase, and a few bad requests."""
    served: dict[str, int] = {}
    deadline = time.monotonic() + seconds
    for _ in range(5000):
        if time.monotonic() >= deadline:
            break
        i = next(counter)
        mode = ("splade", "splade", "bm25", "hybrid")[i % 4]
        params: dict[str, str | int] = {
            "q": queries[i % len(queries)],
            "k": 10,
            "mode": mode,
            "session_id": f"s{i % 40}",
        }
        response = client.get("/search", params=params)
        response.raise_for_status()
        body = response.json()
        served[f"{body['model_version']} {body['arm']}"] = (
            served.get(f"{body['model_version']} {body['arm']}", 0) + 1
        )
        qid, results = body["query_id"], body["results"]
        events = [
            {
                "event_id": f"{qid}-impression-{r['position']}",
                "query_id": qid,
                "action_name": "impression",
                "object_id": r["id"],
                "position": r["position"],
                "session_id": params["session_id"],
            }
            for r in results[:5]
        ]
        if results:
            first = results[0]
            actions = ["click"] + (["add_to_cart"] if i % 5 == 0 else [])
            actions += ["purchase"] if i % 10 == 0 else []
            events += [
                {
                    "event_id": f"{qid}-{action}-1",
                    "query_id": qid,
                    "action_name": action,
                    "object_id": first["id"],
                    "position": 1,
                    "session_id": params["session_id"],
                }
                for action in actions
            ]
        if i % 20 == 0:  # refused by POST /events (unknown action)
            events.append({**events[0], "event_id": f"{qid}-hover", "action_name": "hover"})
        posted = client.post("/events", json={"events": events})
        assert posted.status_code == 200, posted.text
        if i % 15 == 0:  # a retried batch: the ingest ignores the duplicates
            client.post("/events", json={"events": events}).raise_for_status()
        if i % 25 == 0:  # a 4xx search
            assert client.get("/search", params={"q": "drill", "k": 0}).status_code in (400, 422)
        time.sleep(0.02)
    return served


@pytest.mark.skipif(
    PROMETHEUS is None,
    reason="the prometheus binary is not on PATH (make system-deps installs it: "
    "apt-get install prometheus)",
)
def test_every_panel_rule_and_alert_returns_data_from_a_live_prometheus(
    canary_home: CanaryHome,
    broker: EmbeddedBroker,
    processes: Processes,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert PROMETHEUS is not None
    started = time.monotonic()
    timings: dict[str, float] = {}
    home = str(canary_home.home)
    topic = f"it.prom.{uuid.uuid4().hex[:8]}"
    ensure_topics(broker.bootstrap_servers, {topic: 3, f"{topic}.dlq": 1})
    shared = {
        "FLYWHEEL_HOME": home,
        "FLYWHEEL_KAFKA__BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "FLYWHEEL_KAFKA__TOPIC": topic,
        "FLYWHEEL_KAFKA__DLQ_TOPIC": f"{topic}.dlq",
        "FLYWHEEL_SERVER__REGISTRY_POLL_S": "1",
        # Separate canary and production arms (not interleaved lists): the canary panels
        # chart each arm's online nDCG. Every shopper here comes from 127.0.0.1, so the
        # buckets are drawn by session.
        "FLYWHEEL_SEARCH__INTERLEAVING": "false",
        "FLYWHEEL_SERVER__CANARY_UNIT": "session",
        "FLYWHEEL_INGEST__STORE__DERIVED__ATTRIBUTION_WINDOW_S": "2",
    }
    for key, value in shared.items():
        monkeypatch.setenv(key, value)
    env = dict(os.environ)
    flywheel = [sys.executable, "-m", "flywheel_cli"]
    ports = {
        name: free_port() for name in ("search", "ingest", "r1", "r2", "exporter", "prom", "canary")
    }

    # Slow starters first: they import PyTorch-free stacks and load models in parallel.
    empty_home = tmp_path / "empty-home"
    empty_home.mkdir()
    processes.start(
        "retrainer-failing",
        [*flywheel, "retrain", "--every", "1h", "--metrics-port", str(ports["r2"])],
        {**env, "FLYWHEEL_HOME": str(empty_home)},
    )
    processes.start(
        "exporter",
        [sys.executable, "-c", EXPORTER, str(ports["exporter"]), canary_home.production],
        env,
    )
    processes.start(
        "ingest",
        [*flywheel, "ingest"],
        {
            **env,
            "FLYWHEEL_INGEST__METRICS_HOST": "127.0.0.1",
            "FLYWHEEL_INGEST__METRICS_PORT": str(ports["ingest"]),
            "FLYWHEEL_INGEST__ONLINE_METRICS_INTERVAL_S": "1",
            "FLYWHEEL_INGEST__SNAPSHOT_INTERVAL_S": "3",
            "FLYWHEEL_INGEST__POLL_TIMEOUT_MS": "200",
        },
    )
    server = start_server(home, ports["search"], broker.bootstrap_servers)
    try:
        config = prometheus_config(
            {
                "flywheel-search": [f"127.0.0.1:{ports['search']}"],
                "flywheel-ingest": [f"127.0.0.1:{ports['ingest']}"],
                "flywheel-retrainer": [
                    f"127.0.0.1:{ports[name]}" for name in ("r1", "r2", "exporter")
                ],
                "flywheel-canary": [f"127.0.0.1:{ports['canary']}"],
            }
        )
        config_path = tmp_path / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config))
        processes.start(
            "prometheus",
            [
                PROMETHEUS,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{ports['prom']}",
                "--log.level=warn",
            ],
            env,
        )
        prom_url = f"http://127.0.0.1:{ports['prom']}"
        prom = Prometheus(prom_url)
        wait_for(
            "Prometheus to be ready",
            lambda: httpx.get(f"{prom_url}/-/ready", timeout=1).status_code == 200,
            60,
            processes,
        )
        window_start = time.time()
        timings["processes and Prometheus up"] = time.monotonic() - started

        # A malformed record straight onto the topic: the ingest dead-letters it.
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all")
        producer.send(topic, key=b"bad", value=b"{not json").get(timeout=30)
        producer.close()

        client = httpx.Client(base_url=f"http://127.0.0.1:{ports['search']}", timeout=10)
        queries = sorted({" ".join(p.text.split()[:3]) for p in canary_home.products})[:40]
        counter = itertools.count()
        # Phase 1: production v1 and canary v2 side by side, until Prometheus has online
        # nDCG for the serving canary (the canary panels need the overlap).
        served = shop(client, queries, 6, counter)
        assert {f"{canary_home.production} production", f"{canary_home.canary} canary"} <= set(
            served
        ), served
        canary_ndcg = (
            'flywheel_online_ndcg_at_10{arm="canary"} and on (model_version, arm) '
            "flywheel_model_loaded_info"
        )
        for _ in range(40):
            if prom.query(canary_ndcg):
                break
            shop(client, queries, 1, counter)
        assert prom.query(canary_ndcg), "no canary online nDCG reached Prometheus"
        timings["canary phase"] = time.monotonic() - started - sum(timings.values())

        # Plumbing, not statistics: the canary controller (`flywheel canary watch`) decides on
        # fresh snapshots; both arms score alike and it is told not-worse-by-1.0 is enough, so
        # it promotes v2 whatever the clicks (benchmarks/decisions.py measures the judges). The
        # retrainer's runs end as skipped (too few new pairs).
        processes.start(
            "canary",
            [*flywheel, "canary", "watch", "--every", "2", "--metrics-port", str(ports["canary"])],
            {
                **env,
                "FLYWHEEL_RETRAIN__CANARY__JUDGE": "ab",
                "FLYWHEEL_RETRAIN__CANARY__TEST": "fixed",
                "FLYWHEEL_RETRAIN__CANARY__REQUIRE_BETTER": "false",
                "FLYWHEEL_RETRAIN__CANARY__MIN_LISTS_PER_ARM": "2",
                "FLYWHEEL_RETRAIN__CANARY__MARGIN": "1.0",
            },
        )
        processes.start(
            "retrainer",
            [*flywheel, "retrain", "--every", "2s", "--metrics-port", str(ports["r1"])],
            {**env, "FLYWHEEL_RETRAIN__MIN_NEW_PAIRS": "1000000"},
        )
        registry = ModelRegistry(Settings(home=canary_home.home).registry_dir)
        deadline = time.monotonic() + 60
        while registry.pointers().production != canary_home.canary:
            assert time.monotonic() < deadline, (
                f"the controller did not promote: {registry.pointers()}\n" + processes.log("canary")
            )
            assert registry.pointers().canary == canary_home.canary, (
                "the controller rolled the canary back\n" + processes.log("canary")
            )
            shop(client, queries, 1, counter)
        wait_for(
            "encoder_server to serve v2 as production",
            lambda: (
                [(m["version"], m["arm"]) for m in client.get("/readyz").json()["models"]]
                == [(canary_home.canary, "production")]
            ),
            30,
            processes,
        )
        timings["controller promotes, server swaps"] = (
            time.monotonic() - started - sum(timings.values())
        )

        # Phase 2: v2 alone, until its production-arm online nDCG, the previous version's
        # and the retrainer's skipped runs are all in Prometheus. The stage-duration panel
        # charts increase(): one run's samples are not enough if the first scrape came after
        # it, so wait until a later run has moved the histogram.
        shop(client, queries, 6, counter)
        for _ in range(40):
            if all(
                prom.query(q)
                for q in (
                    "model_version:flywheel_online_ndcg_at_10:production_current",
                    "model_version:flywheel_online_ndcg_at_10:production_previous",
                    'flywheel_retrain_runs_total{outcome="skipped"}',
                    "sum(increase(flywheel_retrain_duration_seconds_count[1m])) > 0",
                    "flywheel_offline_ndcg_at_10",
                    "flywheel_consumer_lag_records",
                )
            ):
                break
            shop(client, queries, 1, counter)
        time.sleep(3)  # a few more scrapes and rule evaluations past the last events
        window_end = time.time()
        timings["production phase"] = time.monotonic() - started - sum(timings.values())
        processes.check_alive()

        report, missing = evaluate(prom, window_start, window_end)
        timings["evaluation"] = time.monotonic() - started - sum(timings.values())
        rules = prom.client.get("/api/v1/rules").json()["data"]["groups"]
    finally:
        output = stop_server(server)
    print(f"\n{report}\ntimings (s): {json.dumps({k: round(v, 1) for k, v in timings.items()})}")
    print(f"total {time.monotonic() - started:.1f} s")

    unhealthy = [
        f"{rule['name']}: {rule.get('lastError')}"
        for group in rules
        for rule in group["rules"]
        if rule["health"] != "ok"
    ]
    assert not unhealthy, "rules Prometheus failed to evaluate:\n" + "\n".join(unhealthy)
    assert not missing, "expressions without data or with errors:\n" + "\n".join(missing)
    assert "Application shutdown complete" in output


def evaluate(prom: Prometheus, start: float, end: float) -> tuple[str, list[str]]:
    """Run every expression over [start, end]; returns a report and the failures."""
    window = f"{max(2, round(end - start))}s"
    names = set(prom.client.get("/api/v1/label/__name__/values").json()["data"])
    lines, missing = [], []
    # What Grafana sends: every variable at All, then the run's namespace picked.
    everything = {k: v for d in dashboards().values() for k, v in all_values(d).items()}
    assert {"cluster", "namespace"} <= set(everything), everything
    picked = {"All": everything, NAMESPACE: everything | {"namespace": NAMESPACE}}

    def check(kind: str, name: str, expr: str, needs_data: bool) -> None:
        error, series = prom.query_range(expr, start, end)
        verdict = "error" if error else ("ok" if series else ("NO DATA" if needs_data else "ok"))
        lines.append(f"{verdict:7} {series:3} series  {kind:6} {name}: {' '.join(expr.split())}")
        if error or (needs_data and not series):
            missing.append(f"{kind} {name}: {error or 'no data'}: {' '.join(expr.split())}")

    expressions: list[Expr] = all_expressions()
    titles = {e.panel for e in expressions if e.kind == "panel"}
    assert set(NOT_PRODUCED) <= titles, f"no such panels: {set(NOT_PRODUCED) - titles}"
    for e in expressions:
        expr = with_grafana_macros(e.expr, rate_interval="5s", range_=window, interval="5s")
        produced = e.panel not in NOT_PRODUCED
        for metric, _ in metric_selectors(expr):
            unseen = ":" not in metric and metric not in STANDARD_SERIES and metric not in names
            if unseen and produced:
                missing.append(f"{e.kind} {e.name}: {metric} was never scraped")
        if e.kind == "alert":
            check("alert", e.name, expr, needs_data=False)  # fires or not: no error
            for operand, needs_data in signals(expr):
                check("signal", e.name, operand, needs_data)
        elif e.kind == "panel":
            for label, values in picked.items():
                resolved = with_variables(expr, values)
                assert "$" not in resolved, f"{e.name}: unresolved variable in {resolved}"
                check("panel", f"{e.name} [{label}]", resolved, needs_data=produced)
        else:
            check("record", e.name, expr, needs_data=True)
            # The recorded series keeps the deployment's namespace (recording.yml).
            recorded = f'{{__name__="{e.name}", namespace="{NAMESPACE}"}}'
            check("record", f"{e.name} [{NAMESPACE}]", recorded, needs_data=True)
    return "\n".join(lines), missing
