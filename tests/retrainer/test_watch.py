"""`flywheel canary watch`: the controller as a process that looks every few seconds on a
fresh snapshot, idles without a canary, and survives a look that fails."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from retrainer.watch import look, watch
from services.metrics import registry_for
from services.registry import ModelRegistry
from services.snapshots import SNAPSHOT_REQUEST
from tests.retrainer.test_canary import home_with_canary, traffic


def looks(outcome: str) -> float:
    sample = registry_for("canary").get_sample_value(
        "flywheel_canary_watch_looks_total", {"outcome": outcome}
    )
    return sample or 0.0


def test_a_look_judges_the_canary_on_a_fresh_snapshot(tmp_path: Path) -> None:
    settings = home_with_canary(tmp_path)
    traffic(settings, {"production": 0.3, "canary": 0.7}, lists=300, seed=1)
    before = looks("judged")
    decision = look(settings, every_s=600)  # the snapshot is fresh: no request
    assert decision is not None and decision.decision == "promote", decision
    assert not (settings.exports_dir / SNAPSHOT_REQUEST).exists()
    assert looks("judged") == before + 1
    # No canary any more: the next look idles and asks the ingest for nothing.
    assert look(settings, every_s=600) is None


def test_a_stale_snapshot_is_refreshed_and_without_an_ingest_the_latest_is_used(
    tmp_path: Path,
) -> None:
    settings = home_with_canary(tmp_path)
    traffic(settings, {"production": 0.5, "canary": 0.5}, lists=60, seed=2)
    time.sleep(1.2)
    started = time.monotonic()
    decision = look(settings, every_s=1.0)  # older than 1 s: ask; no ingest answers in 5 s
    assert time.monotonic() - started >= 5
    assert (settings.exports_dir / SNAPSHOT_REQUEST).exists()  # the request is left for it
    assert decision is not None and decision.snapshot is not None


def test_watch_stops_when_told_and_a_failing_look_does_not_kill_it(tmp_path: Path) -> None:
    settings = home_with_canary(tmp_path)  # a canary but no snapshot at all yet
    (settings.registry_dir / "pointers.json").write_text("{not json")  # a look fails
    stop = threading.Event()
    failed = looks("failed")
    runner = threading.Thread(target=watch, args=(settings,), kwargs={"every_s": 0.2, "stop": stop})
    runner.start()
    deadline = time.monotonic() + 10
    while looks("failed") < failed + 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert runner.is_alive()  # still looking after its failed looks
    stop.set()
    runner.join(5)
    assert not runner.is_alive()
    assert looks("failed") >= failed + 2
    ModelRegistry(settings.registry_dir)  # the registry is still there to repair
