"""The gate report: Markdown and HTML with a plot, next to the other reports."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from services.decisions import GateDecision
from services.pvalues import p_text


def _plot(decision: GateDecision) -> bytes:
    """One pair of bars (control, candidate) per check."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=110)
    width = 0.38
    for i, check in enumerate(decision.checks):
        ax.bar(i - width / 2, check.control_value, width, color="#8c8c8c")
        ax.bar(
            i + width / 2,
            check.candidate_value,
            width,
            color="#2a9d8f" if check.passed else "#e76f51",
        )
        ax.annotate(check.control, (i - width / 2, check.control_value), ha="center", fontsize=7)
        ax.annotate(
            check.candidate, (i + width / 2, check.candidate_value), ha="center", fontsize=7
        )
    ax.set_xticks(range(len(decision.checks)), [c.name for c in decision.checks])
    ax.set_ylabel("nDCG@10")
    ax.set_title(f"gate {decision.candidate}: {'PASSED' if decision.passed else 'REJECTED'}")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def _p(value: float | None) -> str:
    return "" if value is None else f", {p_text(value)}"


def to_markdown(decision: GateDecision) -> str:
    """The decision, every check with its figures and rule, as a Markdown page."""
    rows = [
        "| check | evidence | rule | control | candidate | difference | verdict |",
        "| --- | --- | --- | ---: | ---: | ---: | --- |",
    ]
    for c in decision.checks:
        bound = f", lower {c.lower:+.4f}" if c.lower is not None else ""
        rows.append(
            f"| {c.name} | {c.evidence} ({c.queries} queries) | {c.rule} | "
            f"{c.control} {c.control_value:.4f} | {c.candidate} {c.candidate_value:.4f} | "
            f"{c.difference:+.4f}{bound}{_p(c.p_value)} | {'pass' if c.passed else 'FAIL'} |"
        )
    metrics = decision.heldout_metrics
    extra = []
    for metric in ("mrr@10", "recall@100"):
        prod, cand = (metrics.get(role, {}).get(metric) for role in ("production", "candidate"))
        if prod is not None and cand is not None:
            extra.append(f"held-out {metric}: {prod:.4f} -> {cand:.4f} ({cand - prod:+.4f})")
    verdict = "passed" if decision.passed else "rejected"
    return "\n".join(
        [
            f"# Gate: {decision.candidate} vs {decision.production} — {verdict}",
            "",
            f"Decided {decision.decided_at:%Y-%m-%d %H:%M:%S} UTC"
            + (f"; fixed reference {decision.reference}" if decision.reference else "")
            + ".",
            "",
            *rows,
            "",
            *(f"- {line}" for line in extra),
            "",
            "Reasons: " + "; ".join(decision.reasons) + ".",
            "",
            f"Policy: `{decision.policy.model_dump_json()}`",
            "",
        ]
    )


def write_report(decision: GateDecision, directory: Path) -> Path:
    """Write ``gate-<candidate>.md``, ``.png`` and ``.html``; return the HTML path."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = directory / f"gate-{decision.candidate}"
    markdown = to_markdown(decision)
    png = _plot(decision)
    stem.with_suffix(".md").write_text(markdown, encoding="utf-8")
    stem.with_suffix(".png").write_bytes(png)
    image = base64.b64encode(png).decode()
    stem.with_suffix(".html").write_text(
        f"<!doctype html><meta charset=utf-8><title>gate {decision.candidate}</title>"
        f"<body style='font-family:sans-serif;max-width:60rem'><pre>{html.escape(markdown)}</pre>"
        f"<img alt='nDCG@10 per check' src='data:image/png;base64,{image}'></body>",
        encoding="utf-8",
    )
    return stem.with_suffix(".html")
