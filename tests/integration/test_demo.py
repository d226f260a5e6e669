"""`flywheel demo` end to end: broker, ingest and search on a generated catalog; the
storefront's clicks land in DuckDB as graded judgments attributed to their served list."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_demo_runs_the_loop_and_grades_clicks(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLYWHEEL_")}
    env["FLYWHEEL_HOME"] = str(tmp_path)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "flywheel_cli",
            "demo",
            "--products",
            "300",
            "--port",
            str(port),
            "--no-serve",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "GET /search" in done.stdout and "cordless drill" in done.stdout
    con = duckdb.connect(str(tmp_path / "events.duckdb"), read_only=True)
    try:
        lists = con.execute("SELECT count(*), min(model_version) FROM queries").fetchone()
        grades = con.execute(
            "SELECT j.position, j.grade FROM judgments j JOIN queries q USING (query_id) "
            "WHERE q.user_query = 'cordless drill' ORDER BY j.position"
        ).fetchall()
        clicks = con.execute(
            "SELECT count(*) FROM interactions i JOIN queries q USING (query_id) "
            "WHERE i.action = 'click'"
        ).fetchone()
    finally:
        con.close()
    assert lists == (5, "v1")
    assert clicks == (5,)
    # clicked at 2: position 1 was skipped above the click (grade 0), 3 is below it (unknown)
    assert grades == [(1, 0), (2, 1)]
