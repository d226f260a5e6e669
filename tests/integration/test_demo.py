"""`flywheel demo` end to end on a generated catalog: simulated shoppers over HTTP, Kafka,
DuckDB, retraining rounds, a bounded run with a report, and a clean Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLYWHEEL_")}
    env |= {
        "FLYWHEEL_HOME": str(home),
        "FLYWHEEL_SIMULATOR__DATASET": "generated",  # the demo must run without ../shared
        "FLYWHEEL_DEMO__SESSIONS_PER_S": "8",
        # A round judges its canary for 20 s at most, so two rounds fit the test's bound.
        "FLYWHEEL_DEMO__CANARY_ROUND_S": "20",
        "FLYWHEEL_DEMO__TRAIN_EXAMPLES": "150",
        "PYTHONUNBUFFERED": "1",
    }
    return env


def _demo(*args: str) -> list[str]:
    return [sys.executable, "-m", "flywheel_cli", "demo", "--port", "0", "--storefront-port", "0"]


def test_demo_runs_bounded_rounds_and_writes_the_report(tmp_path: Path) -> None:
    report = tmp_path / "reports" / "flywheel.html"
    done = subprocess.run(
        [
            *_demo(),
            "--rounds",
            "2",
            "--events-per-round",
            "1200",
            "--products",
            "400",
            "--report",
            str(report),
        ],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "storefront: http://127.0.0.1:" in done.stdout
    record = json.loads(report.with_suffix(".json").read_text())
    assert record["finished"] is True
    rounds = record["rounds"]
    assert [r["round"] for r in rounds] == [0, 1, 2]
    assert record["facts"]["catalog"].startswith("synthetic")
    for r in rounds:
        assert {"v1 SPLADE", "v1 hybrid", "BM25"} <= set(r["heldout_ndcg"]) or r["round"] > 0
        assert all(0 <= v <= 1 for v in r["heldout_ndcg"].values())
    for r in rounds[1:]:
        assert r["events"]["impression"] > 0 and r["searches_per_s"] > 0
        assert r["decision"].startswith(("gate ", "retrain: ", "canary "))
        assert "production v1" in r["online_ndcg"] or r["production"] != "v1"
    assert rounds[1]["decision"].startswith("gate ")  # round 1 trained and gated a candidate
    html = report.read_text()
    assert "Run finished" in html and html.count("<tr>") == 4 and "data:image/png" in html

    con = duckdb.connect(str(tmp_path / "demo" / "events.duckdb"), read_only=True)
    try:
        lists, orphans, actions = con.execute(
            "SELECT (SELECT count(*) FROM queries), "
            "(SELECT count(*) FROM interactions i ANTI JOIN queries q USING (query_id)), "
            "(SELECT count(DISTINCT action) FROM interactions)"
        ).fetchone() or (0, 0, 0)
    finally:
        con.close()
    assert lists > 0 and orphans == 0 and actions >= 3
    assert sum(r["events"].get("impression", 0) for r in rounds) > 0
    models = tmp_path / "demo" / "registry" / "models"
    assert (models / "v2").is_dir()  # a candidate was trained, registered and gated


def test_demo_adapt_starts_the_flywheel_from_the_adapted_model(tmp_path: Path) -> None:
    report = tmp_path / "flywheel.html"
    env = _env(tmp_path) | {
        "FLYWHEEL_DEMO__ADAPT_PAIRS": "48",
        "FLYWHEEL_ADAPT__FORGETTING_PRODUCTS": "60",
    }
    done = subprocess.run(
        [
            *_demo(),
            *("--adapt", "--rounds", "1", "--events-per-round", "600", "--products", "300"),
            *("--report", str(report)),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "adapting v1 to the catalog (48 generated pairs" in done.stdout
    rounds = json.loads(report.with_suffix(".json").read_text())["rounds"]
    assert [r["round"] for r in rounds] == [0, 0, 1]
    start, adapted = rounds[0], rounds[1]
    assert start["production"] == "v1" and {"v1 SPLADE", "BM25"} <= set(start["heldout_ndcg"])
    assert adapted["decision"].startswith("adapt: ")
    card = json.loads((tmp_path / "demo" / "registry" / "models" / "v2" / "card.json").read_text())
    assert card["source"] == "adapt:catalog"
    # Whatever the gate decided, the table shows both models, and round 1 starts from the one
    # that serves: the adapted model when its gate passed, else the bundled one.
    assert {"v2 SPLADE", "v2 hybrid"} <= set(adapted["heldout_ndcg"])
    passed = adapted["production"] == "v2"
    assert adapted["outcome"] == ("adapted: v2" if passed else "adapt rejected v2")
    assert rounds[2]["production"] in ({"v2", "v3"} if passed else {"v1", "v3"})


def test_ctrl_c_stops_cleanly_and_still_writes_a_report(tmp_path: Path) -> None:
    report = tmp_path / "flywheel.html"
    proc = subprocess.Popen(
        [*_demo(), "--products", "300", "--report", str(report)],
        env=_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 300
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("storefront: ") or time.monotonic() > deadline:
            break
    time.sleep(3)  # let shoppers send some events
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    text = "".join(lines) + out
    assert proc.returncode == 0, text
    assert "Ctrl-C" in text
    record = json.loads(report.with_suffix(".json").read_text())
    assert record["finished"] is False
    assert "stopped early" in report.read_text()
