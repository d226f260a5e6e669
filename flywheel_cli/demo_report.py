"""The demo's rounds as a record, a live table and a self-contained HTML report with plots."""

from __future__ import annotations

import base64
import html
import io
import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich import box
from rich.table import Table

from services.evaluation.plots import RoundSeries, ndcg_per_round_png
from services.registry import atomic_write_text

_SYSTEM_STYLES = {"BM25": ("#888888", "--")}


@dataclass
class RoundRecord:
    """What one round of the demo did and measured."""

    round: int
    production: str
    canary: str | None
    decision: str
    outcome: str
    """The decision in a few words, for the live table."""
    heldout_ndcg: dict[str, float] = field(default_factory=dict)
    """System label ('BM25', 'v2 SPLADE', 'v2 hybrid', ...) -> nDCG@10 on held-out queries."""
    online_ndcg: dict[str, tuple[float, int]] = field(default_factory=dict)
    """Arm ('production v1', 'canary v2') -> (online nDCG@10, closed lists), and
    'interleaved vN wins' -> (the canary's win share, interleaved lists)."""
    searches_per_s: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    events: dict[str, int] = field(default_factory=dict)
    """Shopper events sent in this round, by action."""
    seconds: float = 0.0
    """Time since the demo started, at the end of the round."""
    signal: str | None = None
    """What decided the canary, e.g. 'interleaving (sequential), 412 lists'."""


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _score(r: RoundRecord, mode: str) -> str:
    """Production's held-out nDCG@10 in ``mode``, and the canary's after an arrow."""
    values = [r.heldout_ndcg.get(f"{v} {mode}") for v in (r.production, r.canary) if v]
    return "→".join(_short(v) for v in values if v is not None) or "-"


def _short(value: float) -> str:
    """0.6831 -> '.683' (the table must fit 80 columns)."""
    return f"{value:.3f}".removeprefix("0")


def rounds_table(rounds: list[RoundRecord], title: str = "flywheel demo") -> Table:
    """The live table, one row per finished round; fits an 80-column terminal."""
    table = Table(
        title=title,
        caption="nDCG@10 on held-out labelled queries (never issued by shoppers); "
        "a→b: production→canary",
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
        pad_edge=False,
    )
    # The figures keep their width; the decision wraps when the terminal is narrow.
    for column, width in (("#", 1), ("models", 5), ("BM25", 4), ("SPLADE", 9), ("hybrid", 9)):
        table.add_column(column, no_wrap=True, min_width=width)
    table.add_column("online", no_wrap=True, min_width=9)
    table.add_column("decision", overflow="fold", min_width=8)
    table.add_column("q/s", justify="right", no_wrap=True)
    table.add_column("p99", justify="right", no_wrap=True)
    for r in rounds:
        online = "→".join(
            _short(v)
            for arm in ("production", "canary")
            for key, (v, _n) in r.online_ndcg.items()
            if key.startswith(arm)
        )
        wins = [v for key, (v, _n) in r.online_ndcg.items() if key.startswith("interleaved")]
        if wins:  # the canary's share of decided interleaved lists
            online = f"won {wins[0]:.0%}"
        table.add_row(
            str(r.round),
            "/".join(v for v in (r.production, r.canary) if v),
            _short(r.heldout_ndcg["BM25"]) if "BM25" in r.heldout_ndcg else "-",
            _score(r, "SPLADE"),
            _score(r, "hybrid"),
            online or "-",
            r.outcome,
            f"{r.searches_per_s:.1f}",
            "-" if r.p99_ms is None else f"{r.p99_ms:.0f}",
        )
    return table


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode()


def _plots(rounds: list[RoundRecord]) -> list[tuple[str, str]]:
    """(caption, base64 PNG) for nDCG per round per system, latency and events."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    xs = [r.round for r in rounds]
    systems = list(dict.fromkeys(k for r in rounds for k in r.heldout_ndcg))
    series = [
        RoundSeries(
            system,
            [(r.round, r.heldout_ndcg[system]) for r in rounds if system in r.heldout_ndcg],
            color=_SYSTEM_STYLES.get(system, (None, "-"))[0],
            linestyle=_SYSTEM_STYLES.get(system, (None, "-"))[1],
        )
        for system in systems
    ]
    ndcg = ndcg_per_round_png(
        series, title="Held-out queries (labels never trained on)", legend_columns=2
    )
    out = [("nDCG@10 per round per system", base64.b64encode(ndcg).decode())]

    fig, ax = plt.subplots(figsize=(7, 3))
    for label, values in (
        ("p50", [r.p50_ms for r in rounds]),
        ("p99", [r.p99_ms for r in rounds]),
    ):
        ax.plot(xs, [v if v is not None else float("nan") for v in values], marker="o", label=label)
    ax2 = ax.twinx()
    ax2.bar(xs, [r.searches_per_s for r in rounds], alpha=0.2, color="green", label="searches/s")
    ax.set(xlabel="round", ylabel="ms (seen by shoppers)", title="Search latency and throughput")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax2.set_ylabel("searches/s")
    ax.legend(loc="upper left", fontsize=7)
    out.append(("Latency per round", _png(fig)))
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 3))
    bottom = [0] * len(rounds)
    for action in ("impression", "click", "add_to_cart", "purchase"):
        counts = [r.events.get(action, 0) for r in rounds]
        ax.bar(xs, counts, bottom=bottom, label=action)
        bottom = [b + c for b, c in zip(bottom, counts, strict=True)]
    ax.set(xlabel="round", ylabel="events", title="Shopper events per round", yscale="log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=7)
    out.append(("Events per round", _png(fig)))
    plt.close(fig)
    return out


def write_report(
    path: Path, rounds: list[RoundRecord], facts: dict[str, str], finished: bool
) -> Path:
    """Write the self-contained HTML report (PNG plots inline) and a JSON copy beside it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(str(cell))}</td>"
            for cell in (
                r.round,
                r.production,
                r.canary or "-",
                "<br>".join(f"{k}: {v:.3f}" for k, v in r.heldout_ndcg.items()),
                "<br>".join(f"{k}: {v:.3f} ({n} lists)" for k, (v, n) in r.online_ndcg.items()),
                r.decision,
                r.signal or "-",
                f"{r.searches_per_s:.1f}",
                _ms(r.p50_ms),
                _ms(r.p99_ms),
                sum(r.events.values()),
            )
        ).replace("&lt;br&gt;", "<br>")
        + "</tr>"
        for r in rounds
    )
    plots = "".join(
        f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        for caption, data in (_plots(rounds) if rounds else [])
    )
    facts_html = "".join(
        f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in facts.items()
    )
    total: Counter[str] = Counter()
    for r in rounds:
        total.update(r.events)
    state = "finished" if finished else "stopped early (partial)"
    body = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Flywheel demo report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 70rem; color: #222 }}
table {{ border-collapse: collapse; font-size: .85rem }}
td, th {{ border: 1px solid #ccc; padding: .3rem .5rem; vertical-align: top }}
th {{ background: #f3f3f3 }} dt {{ font-weight: 600 }} dd {{ margin: 0 0 .4rem 1rem }}
figure {{ display: inline-block; margin: 1rem 1rem 0 0 }}
</style></head><body>
<h1>Flywheel demo report</h1>
<p id="state">Run {state} at {datetime.now(UTC).isoformat(timespec="seconds")};
{len(rounds)} round(s), {sum(total.values())} shopper events
({", ".join(f"{k} {v}" for k, v in sorted(total.items())) or "none"}).</p>
<dl>{facts_html}</dl>
<h2>Rounds</h2>
<table id="rounds"><tr><th>round</th><th>production</th><th>canary</th>
<th>held-out nDCG@10</th><th>online per arm</th><th>decision and why</th>
<th>decided by</th>
<th>searches/s</th><th>p50 ms</th><th>p99 ms</th><th>events</th></tr>{rows}</table>
<h2>Plots</h2>{plots}
</body></html>
"""
    atomic_write_text(path, body)
    record = {"finished": finished, "facts": facts, "rounds": [asdict(r) for r in rounds]}
    atomic_write_text(path.with_suffix(".json"), json.dumps(record, indent=2))
    return path
