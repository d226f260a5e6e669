"""The status page in a real headless Chromium (Debian's `chromium`), against a real server."""

from __future__ import annotations

import shutil
import socket
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.decisions import CanaryDecision, GateCheck, GateDecision, append_canary_decision
from services.kafka.broker import EmbeddedBroker
from services.registry import ModelRegistry
from services.settings import CanaryPolicy, GatePolicy
from tests.conftest import IndexedHome
from tests.integration.conftest import CHROMIUM, CHROMIUM_FLAGS, start_server, stop_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FLAGS = CHROMIUM_FLAGS


def check(name: str, control: float, candidate: float) -> GateCheck:
    return GateCheck(
        name=name,
        evidence="test",
        rule="test",
        control="v0",
        candidate="v1",
        queries=50,
        control_value=control,
        candidate_value=candidate,
        difference=candidate - control,
        passed=True,
        reason="better",
    )


@pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (make setup installs it)"
)
def test_status_page_renders_in_chromium(
    indexed_home: IndexedHome, broker: EmbeddedBroker, tmp_path: Path
) -> None:
    assert CHROMIUM is not None
    home = tmp_path / "home"
    shutil.copytree(indexed_home.settings.home / "registry", home / "registry")
    shutil.copytree(indexed_home.settings.home / "index", home / "index")
    registry = ModelRegistry(home / "registry")
    registry.record_gate(
        "v1",
        GateDecision(
            passed=True,
            reasons=["all checks passed"],
            production="v0",
            candidate="v1",
            policy=GatePolicy(),
            checks=[check("heldout", 0.41, 0.47), check("guard", 0.5, 0.52)],
        ),
    )
    append_canary_decision(
        registry.root,
        CanaryDecision(
            decision="rollback",
            reason="canary is worse: difference -0.0312",
            signal="interleaving",
            test="sequential",
            production_version="v1",
            canary_version="v2",
            decided_at=datetime(2026, 11, 28, 3, tzinfo=UTC),
            policy=CanaryPolicy(),
        ),
    )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    token = "status-page-token"
    server = start_server(
        str(home), port, broker.bootstrap_servers, extra_env={"FLYWHEEL_SERVER__ADMIN_TOKEN": token}
    )
    try:
        url = f"http://127.0.0.1:{port}/status?token={token}"
        profile = tmp_path / "profile"
        dom = subprocess.run(
            [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", url],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        shot = tmp_path / "status.png"
        subprocess.run(
            [
                CHROMIUM,
                *FLAGS,
                f"--user-data-dir={profile}",
                f"--screenshot={shot}",
                "--window-size=1200,900",
                url,
            ],
            capture_output=True,
            timeout=60,
            check=True,
        )
    finally:
        stop_server(server)
    assert '<span class="pill" id="production">v1</span>' in dom
    assert "canary is worse: difference -0.0312" in dom
    assert "v2 against v1 (interleaving, sequential)" in dom
    assert "0.5200" in dom  # the guard check's figure
    assert "0.4700" in dom and "passed" in dom
    assert "<svg" in dom and "polyline" in dom
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000  # a rendered page, not a blank
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (1200, 900)
    shutil.copy(shot, Path("/tmp/flywheel-status.png"))
