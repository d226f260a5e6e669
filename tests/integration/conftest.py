"""A real ``flywheel serve`` process (uvicorn) on a free port."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from services.kafka.broker import EmbeddedBroker
from tests.conftest import IndexedHome

CHROMIUM = shutil.which("chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
"""Headless Chromium without a sandbox (root in CI) or anything that reaches the network."""


def start_server(
    home: str,
    port: int,
    bootstrap: str,
    timeout_s: float = 60,
    extra_env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "FLYWHEEL_HOME": home,
        "FLYWHEEL_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        **(extra_env or {}),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "flywheel_cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read().decode() if proc.stdout else ""
            raise RuntimeError(f"flywheel serve exited with {proc.returncode}:\n{out}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("flywheel serve did not become ready in time")


def stop_server(proc: subprocess.Popen[bytes]) -> str:
    """SIGTERM the server and return its output (uvicorn re-raises the signal after a
    graceful shutdown, so the exit status is -15 either way; the log tells them apart)."""
    proc.terminate()
    out, _ = proc.communicate(timeout=30)
    return out.decode()


@pytest.fixture(scope="module")
def server_url(indexed_home: IndexedHome, broker: EmbeddedBroker) -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    proc = start_server(str(indexed_home.settings.home), port, broker.bootstrap_servers)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        assert "Application shutdown complete" in stop_server(proc)
