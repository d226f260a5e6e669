"""The flywheel benchmark's outputs: Markdown tables, JSON and the nDCG-per-round plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.flywheel.protocol import (
    ALPHA,
    GOAL_GAIN,
    GOAL_NDCG,
    REFERENCES,
    SYSTEMS,
    BenchResult,
)
from services.evaluation.metrics import DEFAULT_METRICS
from services.evaluation.plots import RoundSeries, ndcg_per_round_png
from services.evaluation.report import DAGGER, metric_label
from services.pvalues import p_text


def _candidate_text(figures: dict[str, Any] | None, version: str | None) -> str:
    if not figures:
        return ""
    cells = []
    for mode in ("splade", "hybrid"):
        p = figures[mode]["p_values_vs_bm25"].get("ndcg@10")
        mark = DAGGER if p is not None and p <= ALPHA else ""
        cells.append(f"{figures[mode]['means']['ndcg@10']:.3f}{mark}")
    return f"{version}: " + " / ".join(cells)


def to_markdown(result: BenchResult) -> str:
    """Tables: nDCG@10 per round, every metric per round, retraining, goal, references."""
    cfg, systems = result.config, result.systems()
    lines = [
        f"# Flywheel benchmark: {result.dataset}",
        "",
        f"{result.protocol['test_queries']:,} held-out test queries (human labels) · "
        f"{result.protocol['corpus']:,} products · {len(result.rounds) - 1} rounds of "
        f"{cfg.sessions_per_round:,} simulated sessions served in `{cfg.serve_mode}` mode "
        f"({cfg.hybrid_fusion().describe()}) · "
        f"{result.settings['train']['max_examples']:,} training triples per round · "
        f"{cfg.supervised_examples:,} supervised triples.",
        "",
        f"{DAGGER} p ≤ {ALPHA:g} against BM25 ({result.rounds[0].report.stat_test}). nDCG "
        "(Järvelin & Kekäläinen, 2002) with linear gain; hybrid = SPLADE and BM25 fused as "
        "`GET /search` serves them (above; convex: Bruch et al., 2023; RRF: Cormack et al., "
        "2009); SPLADE: Formal et al., 2021.",
        "",
        "## nDCG@10 per round",
        "",
        "| system | " + " | ".join(f"round {r.round}" for r in result.rounds) + " |",
        "| --- |" + " ---: |" * len(result.rounds),
    ]
    for s in systems:
        cells = []
        for r in result.rounds:
            mark = DAGGER if r.report.significant.get(s, {}).get("ndcg@10") else ""
            cells.append(f"{r.report.mean(s):.3f}{mark}")
        lines.append(f"| {SYSTEMS[s]} | " + " | ".join(cells) + " |")
    lines.append("| flywheel version | " + " | ".join(r.production for r in result.rounds) + " |")
    lines += [
        "",
        "## All metrics (p-value against BM25)",
        "",
        "| round | system | " + " | ".join(metric_label(m) for m in DEFAULT_METRICS) + " |",
        "| ---: | --- |" + " ---: |" * len(DEFAULT_METRICS),
    ]
    for r in result.rounds:
        shown = systems if r.round == 0 else ["flywheel", "flywheel_hybrid"]
        for s in shown:
            label = SYSTEMS[s] + (f" ({r.production})" if s.startswith("flywheel") else "")
            cells = [r.report.cell(s, m) for m in DEFAULT_METRICS]
            lines.append(f"| {r.round} | {label} | " + " | ".join(cells) + " |")
    lines += ["", "Systems other than the flywheel do not change after round 0.", ""]
    if result.adapted:
        a = result.adapted
        pairs = (a.get("training") or {}).get("pairs") or {}
        checks = "; ".join(
            f"{c['name']} {c['control_value']:.3f} → {c['candidate_value']:.3f} "
            f"({'pass' if c['passed'] else 'FAIL'})"
            for c in a.get("checks", [])
        )
        lines += [
            "## Adapted before the shoppers (`flywheel adapt`, no labels)",
            "",
            f"{a['version'] or 'no version'}: {a['status']} ({a['message']}); "
            f"{pairs.get('generated', 0):,} generated pairs; gate: {checks or 'none'}. "
            + (
                "The flywheel's round 0 is the adapted model."
                if a["status"] == "production"
                else "The flywheel starts from the bundled model."
            ),
            "",
        ]
    if result.stopped:
        lines += [
            f"Stopped after round {result.rounds[-1].round} of {cfg.rounds}: {result.stopped}.",
            "",
        ]
    lines += [
        "## Retraining",
        "",
        "| round | searches | clicks | gate | held-out nDCG@10 prod → cand (p) | canary "
        "(signal, lists, p) | pairs (feedback / new / hard negatives) | retrain s (mine / "
        "train / index / gate) | production after | candidate not promoted, on test: nDCG@10 "
        "SPLADE / hybrid |",
        "| ---: | ---: | ---: | --- | --- | --- | --- | ---: | --- | --- |",
    ]
    for r in result.rounds[1:]:
        sim, rec = r.simulation, r.retrain or {}
        gate = rec.get("gate") or {}
        heldout = (
            f"{gate['production_ndcg']:.3f} → {gate['candidate_ndcg']:.3f} "
            f"({p_text(gate['p_value'])})"
            if gate
            else ""
        )
        pairs = rec.get("pairs") or {}
        pair_text = (
            f"{pairs.get('feedback', 0):,} / {pairs.get('new', 0):,} / "
            f"{pairs.get('hard_negatives', 0):,}"
            if pairs
            else ""
        )
        clicks = sim.actions.get("click", 0) if sim else 0
        searches = sim.searches if sim else 0
        stages = rec.get("stages") or {}
        split_s = " / ".join(f"{stages.get(k, 0):.0f}" for k in ("mine", "train", "index", "gate"))
        canary = rec.get("canary") or {}
        canary_text = (
            f"{canary['decision']} ({canary['signal']}, {canary['evidence']:,} lists"
            + (f", {p_text(canary['p_value'])}" if canary.get("p_value") is not None else "")
            + ")"
            if canary
            else ""
        )
        lines.append(
            f"| {r.round} | {searches:,} | {clicks:,} | {rec.get('status', '')} | {heldout} | "
            f"{canary_text} | {pair_text} | {rec.get('seconds', 0):.0f} ({split_s}) | "
            f"{r.production} | "
            f"{_candidate_text(rec.get('candidate_on_test'), rec.get('candidate'))} |"
        )
    best, goal = result.best_mode(), result.goal()
    lines += [
        "",
        f"**Best mode for the final flywheel model {best['version']}: `{best['mode']}`** "
        "(nDCG@10 "
        + ", ".join(f"{m} {v:.3f}" for m, v in best["ndcg@10"].items())
        + "); this decides `search.default_mode`.",
        "",
    ]
    target = goal["best"]
    if target and result.dataset == "homedepot":
        lines.append(
            f"Goal (nDCG@10 ≥ {GOAL_NDCG}, ≥ +{GOAL_GAIN:.0%} over BM25, p < {ALPHA}): "
            f"{'**met**' if goal['met'] else '**not met**'}; best flywheel figure "
            f"{target['ndcg@10']:.3f} ({SYSTEMS[target['system']]}, round {target['round']}, "
            f"{target['gain_over_bm25']:+.1%} over BM25, {p_text(target['p_value'])})."
        )
    if result.dataset == "homedepot":
        lines += ["", "## Reference figures (nDCG@10, Home Depot)", ""]
        for source, figures in REFERENCES.items():
            lines.append(f"- {source}: " + "; ".join(f"{k} {v:.3f}" for k, v in figures.items()))
    lines += ["", "## Timings (s)", ""]
    timed = {k: v for k, v in result.timings.items() if k != "total" and k.count(".") <= 1}
    timed["total"] = result.timings.get("total", sum(v for k, v in timed.items() if "." not in k))
    lines.append(", ".join(f"{k} {v:.0f}" for k, v in timed.items()))
    lines += ["", f"Test queries in any training data: {result.leakage}.", ""]
    return "\n".join(lines)


def plot(result: BenchResult, path: Path) -> Path:
    """nDCG@10 per round: flat lines for the systems that do not learn, the flywheel's two
    modes with markers, the candidates the gate rejected hollow, and the goal."""
    styles: dict[str, tuple[str, str, str | None]] = {
        "bm25": ("black", "--", None),
        "offshelf": ("tab:gray", ":", None),
        "offshelf_hybrid": ("tab:gray", "-.", None),
        "adapted": ("tab:purple", ":", None),
        "adapted_hybrid": ("tab:purple", "-.", None),
        "supervised": ("tab:green", ":", None),
        "supervised_hybrid": ("tab:green", "-.", None),
        "flywheel": ("tab:blue", "-", "o"),
        "flywheel_hybrid": ("tab:orange", "-", "s"),
    }
    series = [
        RoundSeries(
            SYSTEMS[s],
            [(r.round, r.report.mean(s)) for r in result.rounds],
            color=styles[s][0],
            linestyle=styles[s][1],
            marker=styles[s][2],
        )
        for s in result.systems()
    ]
    for system, mode in (("flywheel", "splade"), ("flywheel_hybrid", "hybrid")):
        series.append(
            RoundSeries(
                f"{SYSTEMS[system]}: candidate the gate rejected",
                [
                    (r.round, r.retrain["candidate_on_test"][mode]["means"]["ndcg@10"])
                    for r in result.rounds
                    if r.retrain and r.retrain.get("candidate_on_test")
                ],
                color=styles[system][0],
                marker=styles[system][2],
                hollow=True,
            )
        )
    png = ndcg_per_round_png(
        series,
        title=f"Flywheel on {result.dataset}: {result.protocol['test_queries']} test queries",
        xlabel="round (0: before any feedback)",
        ylabel="nDCG@10 on held-out test queries",
        goal=GOAL_NDCG if result.dataset == "homedepot" else None,  # a Home Depot figure
        size=(8, 5),
        dpi=120,
    )
    path.write_bytes(png)
    return path


def write_outputs(result: BenchResult, out: Path) -> dict[str, Path]:
    """``flywheel.md``, ``flywheel.json`` and ``flywheel.png`` under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "markdown": out / "flywheel.md",
        "json": out / "flywheel.json",
        "plot": out / "flywheel.png",
    }
    paths["markdown"].write_text(to_markdown(result), encoding="utf-8")
    paths["json"].write_text(
        json.dumps(result.to_json(), indent=2, default=str) + "\n", encoding="utf-8"
    )
    plot(result, paths["plot"])
    return paths
