"""The result of one offline evaluation, as JSON (for plots and the gate) and Markdown."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from services.pvalues import p_text
from services.registry import atomic_write_text

logger = logging.getLogger(__name__)

LABELS = {"ndcg": "nDCG", "mrr": "MRR", "recall": "Recall", "map": "MAP", "precision": "P"}
DAGGER = "†"


def metric_label(metric: str) -> str:
    """``ndcg@10`` -> ``nDCG@10``; unknown names are returned unchanged."""
    name, sep, cutoff = metric.partition("@")
    return f"{LABELS.get(name, name)}{sep}{cutoff}"


def _value_text(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items())
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


class EvalReport(BaseModel):
    """Mean metrics per system, per-query scores of the primary metric and paired tests
    against the baseline (see :mod:`services.evaluation.metrics` for the definitions)."""

    dataset: str
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    metrics: list[str]
    primary_metric: str = Field(description="The metric kept per query (first of metrics).")
    systems: list[str]
    baseline: str | None
    stat_test: str
    alpha: float
    num_queries: int
    means: dict[str, dict[str, float]] = Field(description="system -> metric -> mean")
    per_query: dict[str, dict[str, float]] = Field(
        description="system -> query id -> primary metric"
    )
    p_values: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="system -> metric -> p-value vs the baseline"
    )
    significant: dict[str, dict[str, bool]] = Field(
        default_factory=dict, description="system -> metric -> p <= alpha"
    )
    protocol: dict[str, Any] = Field(
        default_factory=dict, description="How queries, corpus and systems were chosen."
    )

    def mean(self, system: str, metric: str | None = None) -> float:
        """Mean of ``metric`` (default: the primary one) for ``system``."""
        return self.means[system][metric or self.primary_metric]

    def cell(self, system: str, metric: str) -> str:
        """A table cell: the mean, † when it differs significantly from the baseline, and the
        p-value for every non-baseline system."""
        text = f"{self.means[system][metric]:.3f}"
        p = self.p_values.get(system, {}).get(metric)
        if p is None:
            return text
        mark = DAGGER if self.significant.get(system, {}).get(metric) else ""
        return f"{text}{mark} ({p_text(p)})"

    def to_markdown(self) -> str:
        """A Markdown page: protocol, one row per system, the test and its level."""
        lines = [f"# Offline evaluation: {self.dataset}", ""]
        lines.append(f"{self.num_queries:,} queries · {self.created_at:%Y-%m-%d %H:%M} UTC")
        details = [f"{k}: {_value_text(v)}" for k, v in self.protocol.items() if k != "queries"]
        if details:
            lines += ["", "Protocol: " + " · ".join(details)]
        lines += ["", "| system | " + " | ".join(metric_label(m) for m in self.metrics) + " |"]
        lines.append("| --- |" + " ---: |" * len(self.metrics))
        for system in self.systems:
            name = f"{system} (baseline)" if system == self.baseline else system
            lines.append(
                f"| {name} | " + " | ".join(self.cell(system, m) for m in self.metrics) + " |"
            )
        if self.baseline and len(self.systems) > 1:
            lines += [
                "",
                f"{DAGGER} significantly different from the baseline {self.baseline} "
                f"(p ≤ {self.alpha:g}, {self.stat_test} over queries). nDCG: Järvelin & "
                "Kekäläinen (2002), linear gain = grade; MRR and recall count grade ≥ 1 as "
                "relevant; a query with no results scores 0.",
            ]
        return "\n".join(lines) + "\n"

    def file_stem(self) -> str:
        """``eval-<dataset>-<UTC timestamp>``, safe as a file name."""
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", self.dataset).strip("-") or "dataset"
        return f"eval-{slug}-{self.created_at:%Y%m%d-%H%M%S}"

    def write(self, directory: Path) -> tuple[Path, Path]:
        """Write ``<stem>.json`` and ``<stem>.md`` into ``directory``; return both paths."""
        directory.mkdir(parents=True, exist_ok=True)
        json_path = directory / f"{self.file_stem()}.json"
        md_path = json_path.with_suffix(".md")
        atomic_write_text(json_path, self.model_dump_json(indent=2))
        atomic_write_text(md_path, self.to_markdown())
        logger.info("wrote %s and %s", json_path, md_path)
        return json_path, md_path
