"""What the people running Flywheel want at a glance: versions, pointers, canary, decisions."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import duckdb
from pydantic import BaseModel

from services.decisions import read_canary_decisions
from services.registry import ModelRegistry, Pointers
from services.snapshots import Snapshot

logger = logging.getLogger(__name__)


class VersionStatus(BaseModel):
    """One registered version with the figures its card and the live traffic give."""

    version: str
    role: str
    parent: str | None
    source: str
    created_at: str
    gate_passed: bool | None = None
    gate_reasons: list[str] = []
    heldout_ndcg: float | None = None
    guard_ndcg: float | None = None
    online_ndcg: float | None = None
    online_lists: int = 0


class Status(BaseModel):
    """The whole status page's data."""

    pointers: Pointers
    versions: list[VersionStatus]
    canary_decisions: list[dict[str, Any]]
    timeline: list[dict[str, Any]]
    snapshot: str | None
    last_error: str | None = None
    """Why this replica's last model load or refresh failed (exception text, admins only)."""


def _online(exports: Path) -> tuple[str | None, dict[str, tuple[float, int]]]:
    snapshot = Snapshot.latest(exports)
    if snapshot is None:
        return None, {}
    try:
        return snapshot.name, snapshot.online_ndcg_by_version()
    except duckdb.Error:
        # A snapshot without (or with an unreadable) online table still has a name to show.
        logger.warning("cannot read online metrics from %s", snapshot.folder)
        return snapshot.name, {}


def collect_status(
    registry: ModelRegistry, exports: Path, *, last: int = 20, last_error: str | None = None
) -> Status:
    """Read the registry, the ``last`` entries of its logs and the latest snapshot into one
    :class:`Status`. Logs are read from their end only (a bounded number of bytes), so a
    long history does not slow the page down."""
    pointers = registry.pointers()
    snapshot, online = _online(exports)
    versions = []
    for version in registry.versions():
        card = registry.card(version)
        role = (
            "production"
            if version == pointers.production
            else "canary"
            if version == pointers.canary
            else "rollback target"
            if version in pointers.history
            else ""
        )
        gate = card.gate
        heldout = gate.check("heldout") if gate else None
        guard = gate.check("guard") if gate else None
        versions.append(
            VersionStatus(
                version=version,
                role=role,
                parent=card.parent,
                source=card.source,
                created_at=f"{card.created_at:%Y-%m-%d %H:%M}",
                gate_passed=gate.passed if gate else None,
                gate_reasons=list(gate.reasons) if gate else [],
                heldout_ndcg=heldout.candidate_value if heldout else None,
                guard_ndcg=guard.candidate_value if guard else None,
                online_ndcg=online.get(version, (None, 0))[0],
                online_lists=online.get(version, (None, 0))[1],
            )
        )
    decisions = read_canary_decisions(registry.root, last=last)
    return Status(
        pointers=pointers,
        versions=versions,
        canary_decisions=[d.model_dump(mode="json") for d in decisions],
        timeline=registry.events(last=last),
        snapshot=snapshot,
        last_error=last_error,
    )
