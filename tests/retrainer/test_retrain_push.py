"""A one-shot `flywheel retrain` pushes its metrics to a Pushgateway (a real HTTP endpoint)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
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


@pytest.fixture
def gateway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A Pushgateway stand-in on a free port, and a home (registry v1 in production) that
    pushes to it."""
    registry = ModelRegistry(tmp_path / "registry")
    publish_dummy(registry)
    registry.set_production("v1")
    server = ThreadingHTTPServer(("127.0.0.1", 0), Gateway)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("FLYWHEEL_HOME", str(tmp_path))
    monkeypatch.setenv("FLYWHEEL_RETRAIN__PUSHGATEWAY_URL", f"127.0.0.1:{server.server_port}")
    try:
        yield
    finally:
        server.shutdown()


@pytest.mark.usefixtures("gateway")
def test_one_shot_retrain_pushes_metrics() -> None:
    from flywheel_cli.main import app

    result = CliRunner().invoke(app, ["retrain"])
    assert result.exit_code == 0, result.output
    assert "skipped" in result.output and "no snapshot" in result.output
    method, path, body = PUSHES[-1]
    assert (method, path) == ("PUT", "/metrics/job/flywheel-retrainer")
    assert b'flywheel_retrain_runs_total{outcome="skipped"}' in body
    assert b"flywheel_retrain_last_success_timestamp_seconds" in body


@pytest.mark.usefixtures("gateway")
def test_a_failed_one_shot_retrain_still_pushes(monkeypatch: pytest.MonkeyPatch) -> None:
    import retrainer.pipeline
    from flywheel_cli.main import app
    from services.errors import ModelError

    def broken(*_args: object, **_kwargs: object) -> None:
        raise ModelError("out of memory while training")

    monkeypatch.setattr(retrainer.pipeline, "run_retrain", broken)
    pushed = len(PUSHES)
    result = CliRunner().invoke(app, ["retrain"])
    assert result.exit_code == 2 and "out of memory" in result.output
    assert len(PUSHES) == pushed + 1
    assert PUSHES[-1][:2] == ("PUT", "/metrics/job/flywheel-retrainer")


def _pushed_last_success(body: bytes) -> float:
    for line in body.decode().splitlines():
        if line.startswith("flywheel_retrain_last_success_timestamp_seconds "):
            return float(line.split()[1])
    raise AssertionError("no last-success sample was pushed")


@pytest.mark.usefixtures("gateway")
def test_consecutive_one_shot_runs_carry_the_last_success_over(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each CronJob run is a fresh process: a failing run must still push when the last run
    that succeeded ended, or the staleness alert would never see failures pile up."""
    import retrainer.pipeline
    from flywheel_cli.main import app
    from services.errors import ModelError
    from services.metrics import RETRAIN_LAST_SUCCESS

    assert CliRunner().invoke(app, ["retrain"]).exit_code == 0  # skipped: a success
    succeeded = _pushed_last_success(PUSHES[-1][2])
    assert succeeded > 0

    RETRAIN_LAST_SUCCESS.set(0)  # what a new process starts from

    def broken(*_args: object, **_kwargs: object) -> None:
        raise ModelError("the training image lost its GPU driver")

    monkeypatch.setattr(retrainer.pipeline, "_run", broken)
    assert CliRunner().invoke(app, ["retrain"]).exit_code == 2
    assert b'flywheel_retrain_runs_total{outcome="failed"} 1.0' in PUSHES[-1][2]
    assert _pushed_last_success(PUSHES[-1][2]) == pytest.approx(succeeded, abs=1e-3)
