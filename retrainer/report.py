"""The gate report: Markdown and HTML with a plot, next to the other reports."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from retrainer.gate import CANDIDATE, PRODUCTION, GateDecision


def _plot(decision: GateDecision) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = {"held-out (clicks)": decision.heldout}
    if decision.guard is not None:
        groups["guard (labels)"] = decision.guard
    fig, ax = plt.subplots(figsize=(5.5, 3.2), dpi=110)
    width = 0.38
    for i, means in enumerate(groups.values()):
        ax.bar(
            i - width / 2,
            means[PRODUCTION],
            width,
            color="#8c8c8c",
            label=f"{decision.production} (production)" if i == 0 else None,
        )
        ax.bar(
            i + width / 2,
            means[CANDIDATE],
            width,
            color="#2a9d8f" if decision.passed else "#e76f51",
            label=f"{decision.candidate} (candidate)" if i == 0 else None,
        )
    ax.set_xticks(range(len(groups)), list(groups))
    ax.set_ylabel("nDCG@10")
    ax.set_title(f"gate: {'PASSED' if decision.passed else 'REJECTED'}")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def to_markdown(decision: GateDecision) -> str:
    """The decision and its figures as a Markdown page."""
    rows = [
        "| set | production | candidate | difference |",
        "| --- | ---: | ---: | ---: |",
        f"| held-out nDCG@10 ({decision.heldout_queries} queries) | "
        f"{decision.heldout[PRODUCTION]:.4f} | {decision.heldout[CANDIDATE]:.4f} | "
        f"{decision.gain:+.4f} (p={decision.p_value:.3g}) |",
    ]
    if decision.guard is not None and decision.guard_drop is not None:
        rows.append(
            f"| guard nDCG@10 | {decision.guard[PRODUCTION]:.4f} | "
            f"{decision.guard[CANDIDATE]:.4f} | {-decision.guard_drop:+.4f} |"
        )
    for metric in ("mrr@10", "recall@100"):
        means = {m: v.get(metric) for m, v in decision.heldout_metrics.items()}
        prod, cand = means.get(PRODUCTION), means.get(CANDIDATE)
        if prod is not None and cand is not None:
            p = decision.heldout_p_values.get(metric, 1.0)
            rows.append(
                f"| held-out {metric} | {prod:.4f} | {cand:.4f} | {cand - prod:+.4f} (p={p:.3g}) |"
            )
    verdict = "passed" if decision.passed else "rejected"
    return "\n".join(
        [
            f"# Gate: {decision.candidate} vs {decision.production} — {verdict}",
            "",
            f"Decided {decision.decided_at:%Y-%m-%d %H:%M:%S} UTC.",
            "",
            *rows,
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
        f"<body style='font-family:sans-serif;max-width:52rem'><pre>{html.escape(markdown)}</pre>"
        f"<img alt='nDCG@10 per model' src='data:image/png;base64,{image}'></body>",
        encoding="utf-8",
    )
    return stem.with_suffix(".html")
