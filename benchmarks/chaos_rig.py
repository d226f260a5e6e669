"""The processes of the chaos benchmark: a broker behind a cuttable proxy (the tests' proxy),
`flywheel ingest`, `flywheel serve`, a shopper load that records what the server accepted, and
a health prober.

Every component is a real process talking over loopback; nothing here is a test double.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from services.net import free_port
from tests.integration.tcp_proxy import DroppingProxy

BROKER = """
import signal, sys, threading
from services.kafka.broker import EmbeddedBroker, ensure_topics
from services.kafka.config import KafkaSettings
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
broker = EmbeddedBroker(advertised_port=int(sys.argv[2])).start(port=int(sys.argv[1]))
ensure_topics(broker.bootstrap_servers, KafkaSettings().topics())
print("ready", flush=True)
stop.wait()
broker.stop()
"""


def _env(home: Path, bootstrap: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "FLYWHEEL_HOME": str(home),
        "FLYWHEEL_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        **extra,
    }


@dataclass
class Rig:
    """Broker, proxy, ingest and server of one chaos run, and their logs."""

    home: Path
    logs: Path
    broker_port: int = field(default_factory=lambda: free_port("127.0.0.1"))
    proxy_port: int = field(default_factory=lambda: free_port("127.0.0.1"))
    server_port: int = field(default_factory=lambda: free_port("127.0.0.1"))
    ingest_metrics_port: int = field(default_factory=lambda: free_port("127.0.0.1"))
    broker: subprocess.Popen[bytes] | None = None
    ingest: subprocess.Popen[bytes] | None = None
    server: subprocess.Popen[bytes] | None = None
    ingest_exits: list[int] = field(default_factory=list)
    """Exit statuses of ingest processes that ended without being killed by the benchmark."""

    def __post_init__(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        self.proxy = DroppingProxy(self.proxy_port, self.broker_port)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.proxy_port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"

    def _log(self, name: str) -> int:
        return os.open(self.logs / f"{name}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    # -- broker -------------------------------------------------------------------------------
    def start_broker(self) -> None:
        proc = subprocess.Popen(
            [sys.executable, "-c", BROKER, str(self.broker_port), str(self.proxy_port)],
            stdout=subprocess.PIPE,
            stderr=self._log("broker"),
        )
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != b"ready":
            raise RuntimeError(f"the broker did not start; see {self.logs}/broker.log")
        self.broker = proc

    def stop_broker(self) -> None:
        if self.broker is not None:
            self.broker.send_signal(signal.SIGTERM)
            self.broker.wait(timeout=30)
            self.broker = None

    # -- ingest -------------------------------------------------------------------------------
    def start_ingest(self) -> None:
        env = _env(
            self.home,
            self.bootstrap,
            FLYWHEEL_INGEST__METRICS_PORT=str(self.ingest_metrics_port),
            FLYWHEEL_INGEST__POLL_TIMEOUT_MS="200",
        )
        self.ingest = subprocess.Popen(
            [sys.executable, "-m", "flywheel_cli", "ingest"],
            env=env,
            stdout=self._log("ingest"),
            stderr=subprocess.STDOUT,
        )

    def ingest_alive(self) -> bool:
        """Whether the ingest runs; one that exited on its own is recorded and restarted."""
        if self.ingest is None:
            return False
        status = self.ingest.poll()
        if status is None:
            return True
        self.ingest_exits.append(status)
        self.start_ingest()
        return False

    def kill_ingest(self) -> None:
        """SIGKILL: a crash, an OOM kill, a node lost."""
        if self.ingest is not None and self.ingest.poll() is None:
            self.ingest.kill()
            self.ingest.wait()
        elif self.ingest is not None:
            self.ingest_exits.append(self.ingest.returncode)
        self.ingest = None

    def stop_ingest(self) -> int:
        assert self.ingest is not None
        self.ingest.send_signal(signal.SIGTERM)
        status = self.ingest.wait(timeout=300)
        self.ingest = None
        return status

    # -- server -------------------------------------------------------------------------------
    def start_server(self, timeout_s: float = 120) -> float:
        started = time.monotonic()
        env = _env(self.home, self.bootstrap, FLYWHEEL_SERVER__EVENTS_ACK_TIMEOUT_S="0.5")
        self.server = subprocess.Popen(
            [sys.executable, "-m", "flywheel_cli", "serve", "--port", str(self.server_port)],
            env=env,
            stdout=self._log("server"),
            stderr=subprocess.STDOUT,
        )
        while time.monotonic() - started < timeout_s:
            if self.server.poll() is not None:
                raise RuntimeError(f"flywheel serve exited; see {self.logs}/server.log")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return time.monotonic() - started
            time.sleep(0.2)
        raise RuntimeError("flywheel serve did not become ready")

    def kill_server(self) -> None:
        assert self.server is not None
        self.server.kill()
        self.server.wait()

    def stop_server(self) -> None:
        if self.server is not None and self.server.poll() is None:
            self.server.terminate()
            self.server.wait(timeout=60)

    def close(self) -> None:
        for proc in (self.ingest, self.server):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        with contextlib.suppress(Exception):
            self.stop_broker()
        self.proxy.close()


@dataclass
class Ledger:
    """What the load saw: events the server accepted (2xx), latencies by phase, lists served."""

    accepted: dict[str, str] = field(default_factory=dict)
    """event_id → phase in which the server accepted it (answered 2xx, not refused)."""
    unknown: set[str] = field(default_factory=set)
    """Sent, but the connection broke before an answer: may or may not be stored."""
    refused: int = 0
    served: dict[str, str] = field(default_factory=dict)
    """query_id → phase, for every 200 from GET /search."""
    latency: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Shoppers:
    """Paced shoppers: search, then report 5 impressions and a click for the list."""

    WORDS = ("drill", "hose", "faucet", "lamp", "saw", "paint", "ladder", "tile", "fan", "sink")

    def __init__(self, url: str, workers: int = 4, pause_s: float = 0.05) -> None:
        self.url = url
        self.workers = workers
        self.pause_s = pause_s
        self.phase = "start"
        self.ledger = Ledger()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(workers)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _run(self, worker: int) -> None:
        rng = random.Random(worker)
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self._stop.is_set():
                self._shop(client, rng)
                self._stop.wait(self.pause_s)

    def _shop(self, client: httpx.Client, rng: random.Random) -> None:
        ledger, phase = self.ledger, self.phase
        q = " ".join(rng.sample(self.WORDS, 2))
        started = time.perf_counter()
        try:
            response = client.get("/search", params={"q": q, "k": 5})
        except httpx.TransportError:
            with ledger.lock:
                ledger.errors[phase] = ledger.errors.get(phase, 0) + 1
            return
        took = time.perf_counter() - started
        with ledger.lock:
            if response.status_code != 200:
                ledger.errors[phase] = ledger.errors.get(phase, 0) + 1
                return
            ledger.latency.setdefault(phase, []).append(took)
        body = response.json()
        with ledger.lock:
            ledger.served[body["query_id"]] = phase
        events = [
            {
                "event_id": uuid.uuid4().hex,
                "query_id": body["query_id"],
                "action_name": "impression",
                "object_id": hit["id"],
                "position": n + 1,
            }
            for n, hit in enumerate(body["results"])
        ]
        if events:
            click = rng.randrange(len(events))
            events.append({**events[click], "event_id": uuid.uuid4().hex, "action_name": "click"})
        self._post(client, events, phase)

    def _post(self, client: httpx.Client, events: list[dict[str, object]], phase: str) -> None:
        ledger = self.ledger
        ids = [str(e["event_id"]) for e in events]
        try:
            response = client.post("/events", json={"events": events})
        except httpx.TransportError:
            with ledger.lock:
                ledger.unknown.update(ids)
            return
        if response.status_code not in (200, 503):
            with ledger.lock:
                ledger.errors[phase] = ledger.errors.get(phase, 0) + 1
            return
        refused = {int(r["index"]) for r in response.json().get("rejected", [])}
        with ledger.lock:
            for n, event_id in enumerate(ids):
                if n in refused:
                    ledger.refused += 1
                else:
                    ledger.accepted[event_id] = phase


class Prober:
    """GET /healthz every ``every_s``; counts answers by status per phase."""

    def __init__(self, url: str, every_s: float = 0.25) -> None:
        self.url = url
        self.every_s = every_s
        self.phase = "start"
        self.counts: dict[str, dict[str, int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=2) as client:
            while not self._stop.wait(self.every_s):
                phase = self.phase
                try:
                    status = str(client.get("/healthz").status_code)
                except httpx.TransportError:
                    status = "no answer"
                bucket = self.counts.setdefault(phase, {})
                bucket[status] = bucket.get(status, 0) + 1
