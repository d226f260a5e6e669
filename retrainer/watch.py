"""``flywheel canary watch``: the canary controller as a long-running process.

Run inside the retraining job, a canary was judged only when the next retraining started
(every six hours in the Kubernetes CronJob). Watching judges it every ``every_s`` seconds on a
snapshot at most that old (asking the running ingest for a fresh one), so a canary is promoted
or rolled back in minutes, and retraining no longer waits for it. Each look is independent:
the sequential test stays valid however often it looks, and a failed look (no snapshot, an
unreachable ingest) is logged and retried at the next one.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime

from retrainer.canary import run_controller
from services.decisions import CanaryDecision
from services.errors import FlywheelError
from services.metrics import CANARY_WATCH_LOOKS
from services.registry import ModelRegistry
from services.settings import Settings
from services.snapshots import Snapshot, request_snapshot

logger = logging.getLogger(__name__)


def _snapshot_age_s(settings: Settings) -> float | None:
    latest = Snapshot.latest(settings.exports_dir)
    if latest is None:
        return None
    created = datetime.fromisoformat(str(latest.manifest["created_at"]))
    return (datetime.now(UTC) - created).total_seconds()


def look(settings: Settings, every_s: float) -> CanaryDecision | None:
    """One look: a snapshot at most ``every_s`` old, then the controller; None without a
    canary (nothing to judge, no snapshot asked for)."""
    if ModelRegistry(settings.registry_dir).pointers().canary is None:
        CANARY_WATCH_LOOKS.labels(outcome="idle").inc()
        return None
    age = _snapshot_age_s(settings)
    if age is None or age > every_s:
        try:
            request_snapshot(settings.exports_dir, wait_s=max(5.0, every_s / 2))
        except FlywheelError as exc:  # judge on the latest there is, and say so
            logger.warning("no fresh snapshot (%s); judging on the latest", exc)
    decision = run_controller(settings)
    CANARY_WATCH_LOOKS.labels(outcome="judged").inc()
    return decision


def watch(settings: Settings, *, every_s: float, stop: threading.Event) -> int:
    """Look every ``every_s`` seconds until ``stop`` is set; returns the decisions applied."""
    applied = 0
    while True:
        started = time.monotonic()
        try:
            decision = look(settings, every_s)
            applied += decision is not None and decision.decision != "wait"
        except FlywheelError as exc:
            CANARY_WATCH_LOOKS.labels(outcome="failed").inc()
            logger.error("canary look failed: %s", exc)
        except Exception:  # a corrupt state file or a bug: keep watching, the metric alerts
            CANARY_WATCH_LOOKS.labels(outcome="failed").inc()
            logger.exception("canary look failed unexpectedly")
        if stop.wait(max(0.0, every_s - (time.monotonic() - started))):
            return applied
