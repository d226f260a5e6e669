"""The nDCG-per-round plot, one drawing for the demo's report and the flywheel benchmark.

Each system is a :class:`RoundSeries` of (round, nDCG@10) points on the held-out queries
(nDCG: Järvelin & Kekäläinen, 2002); systems that do not learn are flat lines, the flywheel's
versions carry markers, and candidates the gate rejected are hollow markers off the line.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RoundSeries:
    """One system's nDCG@10 per round and how it is drawn."""

    label: str
    points: Sequence[tuple[int, float]]
    color: str | None = None
    linestyle: str = "-"
    marker: str | None = "o"
    hollow: bool = False
    """Unconnected hollow markers (e.g. candidates the gate rejected) instead of a line."""


def ndcg_per_round_png(
    series: Sequence[RoundSeries],
    *,
    title: str,
    xlabel: str = "round",
    ylabel: str = "nDCG@10",
    goal: float | None = None,
    size: tuple[float, float] = (7, 3.6),
    dpi: int = 110,
    legend_columns: int = 1,
) -> bytes:
    """The plot as PNG bytes: one line (or hollow markers) per series, integer rounds on the
    x axis, and a faint horizontal line at ``goal`` when given."""
    import matplotlib

    matplotlib.use("Agg")  # reports are written on servers without a display
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=size)
    try:
        for s in series:
            if not s.points:
                continue
            xs, ys = zip(*s.points, strict=True)
            if s.hollow:
                ax.scatter(
                    xs,
                    ys,
                    marker=s.marker or "o",
                    facecolors="none",
                    edgecolors=s.color,
                    label=s.label,
                )
            else:
                ax.plot(
                    xs, ys, linestyle=s.linestyle, marker=s.marker, color=s.color, label=s.label
                )
        if goal is not None:
            ax.axhline(goal, color="tab:red", linewidth=0.8, alpha=0.6, label=f"goal {goal}")
        ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncols=legend_columns, loc="best")
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
        return buffer.getvalue()
    finally:
        plt.close(fig)
