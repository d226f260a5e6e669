"""A one-shot `flywheel retrain` pushes its metrics to a Pushgateway (a real HTTP endpoint)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from services.registry import ModelRegistry
from tests.services.test_registry import publish_dummy

PUSHES: list[tuple[str, str, bytes]] = []


class Gateway(BaseHTTPRequestHandler):
    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        PUSHES.append(("PUT", self.path, body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        return None


def test_one_shot_retrain_pushes_metrics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flywheel_cli.main import app

    registry = ModelRegistry(tmp_path / "registry")
    publish_dummy(registry)
    registry.set_production("v1")
    server = ThreadingHTTPServer(("127.0.0.1", 0), Gateway)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("FLYWHEEL_HOME", str(tmp_path))
    monkeypatch.setenv("FLYWHEEL_RETRAIN__PUSHGATEWAY_URL", f"127.0.0.1:{server.server_port}")
    try:
        result = CliRunner().invoke(app, ["retrain"])
    finally:
        server.shutdown()
    assert result.exit_code == 0, result.output
    assert "skipped" in result.output and "no snapshot" in result.output
    method, path, body = PUSHES[-1]
    assert (method, path) == ("PUT", "/metrics/job/flywheel-retrainer")
    assert b'flywheel_retrain_runs_total{outcome="skipped"}' in body
    assert b"flywheel_retrain_last_success_timestamp_seconds" in body
