"""One Prometheus registry per process: each app's /metrics (and the retrainer's Pushgateway
push) carries its own series, build info and the process metrics, and none of another app's
series; build info names the package version and, in encoder_server, the serving model."""

from __future__ import annotations

import importlib.metadata
import platform
import signal
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from encoder_server.app import create_app
from encoder_server.holder import LoadedModel, ModelHolder
from feedback_ingest.service import run_ingest
from flywheel_cli.main import app as flywheel
from services import metrics
from services.errors import FlywheelError
from services.events import REJECT_REASONS, MemorySink
from services.metrics import APPS, App, registry_for
from services.net import free_port
from services.registry import ModelRegistry
from services.settings import Settings
from tests.services.test_registry import publish_dummy

# A few metric names per app, written out by hand so that a metric moved to the wrong group
# fails here and not only in the group table.
OWN: dict[App, set[str]] = {
    "search": {
        "flywheel_search_latency_seconds",
        "flywheel_search_requests_total",
        "flywheel_model_swaps_total",
        "flywheel_events_received_total",
        "flywheel_event_sink_errors_total",
        "flywheel_event_backlog",
    },
    "ingest": {
        "flywheel_events_ingested_total",
        "flywheel_events_rejected_total",
        "flywheel_consumer_lag_records",
        "flywheel_ingest_batch_records",
        "flywheel_ingest_offset_gaps_total",
        "flywheel_online_ndcg_at_10",
        "flywheel_interleaving_lists",
    },
    "retrainer": {
        "flywheel_retrain_runs_total",
        "flywheel_retrain_duration_seconds",
        "flywheel_retrain_last_success_timestamp_seconds",
        "flywheel_gate_decisions_total",
        "flywheel_offline_ndcg_at_10",
    },
    "canary": {
        "flywheel_canary_decisions_total",
        "flywheel_canary_ndcg_difference",
        "flywheel_canary_watch_looks_total",
    },
}
EVERY_APP = {"flywheel_build_info", "process_start_time_seconds", "python_info"}
VERSION = importlib.metadata.version("flywheel-search")


def families(text: str) -> set[str]:
    """Metric names as exposed (``# TYPE`` lines, counters with their ``_total``)."""
    return {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}


def build_info(text: str) -> dict[str, str]:
    (sample,) = (
        s
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "flywheel_build_info"
    )
    assert sample.value == 1.0
    return dict(sample.labels)


def assert_exports_only(app: App, text: str) -> None:
    found = families(text)
    assert OWN[app] | EVERY_APP <= found
    others = set().union(*(names for other, names in OWN.items() if other != app))
    assert not found & others, f"{app} exports other apps' series: {sorted(found & others)}"
    assert build_info(text)["version"] == VERSION


def scrape(port: int) -> str:
    response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    assert response.status_code == 200
    return response.text


def assert_stopped(port: int) -> None:
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1)


def test_every_declared_metric_has_exactly_one_owner() -> None:
    declared = [v for v in vars(metrics).values() if isinstance(v, MetricWrapperBase)]
    groups = [*metrics.OWNED.values(), metrics.SHARED]
    for metric in declared:
        owners = sum(metric in group for group in groups)
        assert owners == 1, f"{metric._name} is in {owners} groups"
    assert sum(len(group) for group in groups) == len(declared)
    assert set(metrics.OWNED) == set(APPS)


@pytest.mark.parametrize("app", APPS)
def test_each_registry_exports_its_own_series_and_no_other_apps(app: App) -> None:
    assert_exports_only(app, generate_latest(registry_for(app)).decode())


def test_series_with_closed_label_sets_start_at_zero_in_their_owner_only() -> None:
    swaps = ("flywheel_model_swaps_total", {"outcome": "failed"})
    rollbacks = ("flywheel_canary_decisions_total", {"decision": "rollback"})
    for app in APPS:
        exported = registry_for(app)
        assert (exported.get_sample_value(*swaps) is not None) == (app == "search"), app
        assert (exported.get_sample_value(*rollbacks) is not None) == (app == "canary"), app


def test_the_default_registry_carries_no_flywheel_series() -> None:
    assert "flywheel_" not in generate_latest(REGISTRY).decode()


def test_build_info_has_the_package_and_python_versions() -> None:
    info = build_info(generate_latest(registry_for("retrainer")).decode())
    assert info["version"] == VERSION != "unknown"
    assert info["python"] == platform.python_version()
    assert "model_version" in info


def test_encoder_server_metrics_endpoint(tmp_path: Path) -> None:
    """No model in this home: the app starts and serves /metrics all the same."""
    with TestClient(create_app(Settings(home=tmp_path), sink=MemorySink())) as client:
        client.get("/search", params={"q": "drill"})  # 503: counted all the same
        text = client.get("/metrics").text
    assert_exports_only("search", text)
    assert 'flywheel_search_requests_total{arm="",model_version="",status="5xx"}' in text


class _FakeIndex:
    def close(self) -> None:
        pass


def _fake_load(settings: Settings, registry: ModelRegistry, version: str) -> LoadedModel:
    unused = cast(Any, None)
    return LoadedModel(version, unused, unused, cast(Any, _FakeIndex()), products=0)


def serving() -> str:
    """The model_version label of encoder_server's build info."""
    return build_info(generate_latest(registry_for("search")).decode())["model_version"]


def test_a_hot_swap_puts_the_serving_model_in_build_info(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Loading is the hot-swap tests' concern (tests/encoder_server/test_hot_swap.py, with real
    # models); here any version "loads".
    monkeypatch.setattr("encoder_server.holder.load_version", _fake_load)
    monkeypatch.setattr("encoder_server.holder.warm_up", lambda model: None)
    settings = Settings(home=tmp_path)
    registry = ModelRegistry(settings.registry_dir)
    for _ in range(2):
        publish_dummy(registry)
    registry.set_production("v1")
    holder = ModelHolder(settings)
    try:
        holder.load()
        assert serving() == "v1"
        registry.set_canary("v2", 0.5)
        assert holder.refresh() is True
        assert serving() == "v1"  # the production arm's model
        registry.promote()
        assert holder.refresh() is True
        assert serving() == "v2"
    finally:
        holder.close()
        metrics.set_build_info()


def test_feedback_ingest_metrics_endpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    scraped: list[str] = []

    class ScrapingIngestor:
        """Stands in for the Kafka consumer: scrapes the ingest's /metrics when started."""

        def __init__(self, *args: object, **kwargs: object) -> None:
            pass

        def start(self) -> None:
            scraped.append(scrape(port))

        def flush(self) -> None:
            pass

        def close(self) -> None:
            pass

    monkeypatch.setattr("feedback_ingest.service.Ingestor", ScrapingIngestor)
    settings = Settings(home=tmp_path)
    settings.ingest.metrics_port = port
    settings.ingest.metrics_host = "127.0.0.1"
    stop = threading.Event()
    stop.set()  # start, then stop before the first poll
    # Off the main thread: run_ingest installs signal handlers only on the main thread.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(run_ingest, settings, stop=stop).result(timeout=60)
    (text,) = scraped
    assert_exports_only("ingest", text)
    rejected = {
        s.labels["reason"]
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "flywheel_events_rejected_total"
    }
    assert rejected == set(REJECT_REASONS)  # the closed label set, at 0 before any record
    assert_stopped(port)  # stopped with the ingest


@pytest.fixture
def no_signal_handlers(monkeypatch: pytest.MonkeyPatch) -> dict[int, Callable[..., Any]]:
    """The CLI commands' signal handlers (SIGTERM, SIGINT) by signal, captured instead of
    installed in pytest."""
    handlers: dict[int, Callable[..., Any]] = {}

    def install(signum: int, handler: Callable[..., Any]) -> Callable[..., Any] | None:
        previous, handlers[signum] = handlers.get(signum), handler
        return previous

    monkeypatch.setattr("signal.signal", install)
    return handlers


def test_canary_watch_metrics_endpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_signal_handlers: dict[int, Any]
) -> None:
    port = free_port()
    scraped: list[str] = []

    def fake_watch(settings: Settings, every_s: float, stop: threading.Event) -> int:
        scraped.append(scrape(port))
        return 0

    monkeypatch.setenv("FLYWHEEL_HOME", str(tmp_path))
    monkeypatch.setattr("retrainer.watch.watch", fake_watch)
    result = CliRunner().invoke(flywheel, ["canary", "watch", "--metrics-port", str(port)])
    assert result.exit_code == 0, result.output
    (text,) = scraped
    assert_exports_only("canary", text)
    assert_stopped(port)


def test_retrainer_metrics_endpoint_and_push(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_signal_handlers: dict[int, Any]
) -> None:
    port = free_port()
    scraped: list[str] = []
    pushed: list[CollectorRegistry] = []

    def fake_run_retrain(settings: Settings, stage: Callable[[str], None]) -> Any:
        scraped.append(scrape(port))
        no_signal_handlers[signal.SIGTERM]()  # the loop ends after this run
        raise FlywheelError("no snapshot")  # logged: a failed run still pushes

    def fake_push(url: str, job: str, registry: CollectorRegistry, timeout: float) -> None:
        assert (url, job) == ("http://pushgateway:9091", "flywheel-retrainer")
        pushed.append(registry)

    monkeypatch.setenv("FLYWHEEL_HOME", str(tmp_path))
    monkeypatch.setenv("FLYWHEEL_RETRAIN__PUSHGATEWAY_URL", "http://pushgateway:9091")
    monkeypatch.setattr("retrainer.pipeline.run_retrain", fake_run_retrain)
    monkeypatch.setattr("prometheus_client.push_to_gateway", fake_push)
    args = ["retrain", "--every", "1h", "--metrics-port", str(port)]
    result = CliRunner().invoke(flywheel, args)
    assert result.exit_code == 0, result.output
    (text,) = scraped
    assert_exports_only("retrainer", text)
    assert pushed == [registry_for("retrainer")]
    assert_exports_only("retrainer", generate_latest(pushed[0]).decode())
    assert_stopped(port)
