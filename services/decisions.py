"""The loop's decisions as typed records: what the gate and the canary controller decided, on
which signal, with which figures. One writer and one reader per log.

The retrainer writes :class:`GateDecision` into the candidate's card and the canary controller
appends :class:`CanaryDecision` to ``registry/canary_decisions.jsonl``; the status page, the
CLI, the demo and the benchmarks read them back through this module only.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from services.pvalues import p_text
from services.settings import CanaryPolicy, GatePolicy

logger = logging.getLogger(__name__)

CANARY_DECISIONS_LOG = "canary_decisions.jsonl"
"""Written by the canary controller in the registry folder, one JSON decision per line."""
TAIL_BYTES = 256 * 1024
"""How much of the end of a log :func:`read_canary_decisions` reads at most."""


class GateCheck(BaseModel):
    """One comparison the gate made, and whether the candidate passed it."""

    name: str = Field(
        description="'heldout', 'guard', 'reference' or 'forgetting' (flywheel adapt)."
    )
    evidence: str = Field(description="What was compared, e.g. 'click-judged held-out queries'.")
    rule: str = Field(description="The rule applied, in words.")
    control: str
    candidate: str
    queries: int
    control_value: float
    candidate_value: float
    difference: float
    lower: float | None = Field(default=None, description="One-sided 95% lower bound.")
    p_value: float | None = None
    passed: bool
    reason: str


class GateDecision(BaseModel):
    """A recorded gate decision: every check with its figures, and the verdict."""

    passed: bool
    reasons: list[str]
    production: str
    candidate: str
    reference: str | None = None
    decided_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    checks: list[GateCheck] = Field(default_factory=list)
    heldout_metrics: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="'production'/'candidate' -> metric -> mean on the held-out queries.",
    )
    policy: GatePolicy

    def check(self, name: str) -> GateCheck | None:
        """The check called ``name``, if the gate made it."""
        return next((c for c in self.checks if c.name == name), None)

    def summary(self) -> str:
        """One line: verdict and each check's figures."""
        parts = [
            f"{c.name} {c.control_value:.3f}->{c.candidate_value:.3f}"
            + (f" ({p_text(c.p_value)})" if c.p_value is not None else "")
            + ("" if c.passed else " FAIL")
            for c in self.checks
        ]
        verdict = "passed" if self.passed else "rejected"
        return f"gate {verdict} {self.candidate}: " + (", ".join(parts) or "no checks")


Signal = Literal["interleaving", "ab"]
Test = Literal["sequential", "fixed"]
CanaryVerdict = Literal["promote", "rollback", "wait"]


class ArmStats(BaseModel):
    """Online nDCG@10 (click gains) of one arm's served lists."""

    version: str
    lists: int
    mean: float
    variance: float
    ctr_at_10: float


class InterleavingStats(BaseModel):
    """Team-draft interleaving outcomes of the canary against production."""

    lists: int
    wins: int
    losses: int
    ties: int

    @property
    def decided(self) -> int:
        return self.wins + self.losses


class CanaryDecision(BaseModel):
    """A controller decision, the versions it judged and the figures behind it."""

    decision: CanaryVerdict
    reason: str
    signal: Signal | None = None
    test: Test | None = None
    production_version: str | None = None
    canary_version: str | None = None
    decided_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    snapshot: str | None = None
    production: ArmStats | None = None
    canary: ArmStats | None = None
    interleaving: InterleavingStats | None = None
    difference: float | None = Field(
        default=None, description="canary - production (nDCG), or win share - 1/2."
    )
    lower: float | None = None
    upper: float | None = None
    p_value: float | None = Field(default=None, description="Always-valid p (sequential).")
    evidence: int = Field(default=0, description="Lists per arm, or decided interleaved lists.")
    policy: CanaryPolicy


def append_canary_decision(registry_dir: Path, record: CanaryDecision) -> None:
    """Append one decision to the registry's canary log."""
    registry_dir.mkdir(parents=True, exist_ok=True)
    with (registry_dir / CANARY_DECISIONS_LOG).open("a", encoding="utf-8") as log:
        log.write(record.model_dump_json() + "\n")


def read_canary_decisions(registry_dir: Path, *, last: int | None = None) -> list[CanaryDecision]:
    """Recorded decisions, oldest first: the last ``last`` of them, read from the end of the
    log (at most :data:`TAIL_BYTES`) so a long history costs nothing. A line that does not
    parse (a torn write, an older format) is skipped with a warning."""
    path = registry_dir / CANARY_DECISIONS_LOG
    if not path.is_file():
        return []
    with path.open("rb") as handle:
        size = handle.seek(0, 2)
        handle.seek(max(0, size - TAIL_BYTES))
        data = handle.read()
    lines = data.decode("utf-8", errors="replace").splitlines()
    if size > TAIL_BYTES:
        lines = lines[1:]  # the first line may be cut
    records: list[CanaryDecision] = []
    for line in lines:
        if not line.strip():
            continue
        try:
            records.append(CanaryDecision.model_validate(json.loads(line)))
        except (ValueError, ValidationError) as exc:
            logger.warning("skipping an unreadable canary decision in %s: %s", path, exc)
    return records[-last:] if last else records
