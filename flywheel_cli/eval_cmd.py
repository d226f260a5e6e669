"""``flywheel eval``: offline evaluation of BM25, SPLADE and hybrid on a labelled data set."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import TaskID
from rich.table import Table

from flywheel_cli.ui import console, progress_bar
from services.evaluation.report import EvalReport, metric_label
from services.settings import Settings

logger = logging.getLogger(__name__)

app = typer.Typer()

STAGES = {
    "index": "indexing products",
    "bm25": "bm25 (Qdrant) queries",
    "bm25s": "bm25s queries",
    "splade": "splade queries",
    "hybrid": "hybrid queries",
}


def report_table(report: EvalReport) -> Table:
    """One row per system; † marks a significant difference from the baseline."""
    table = Table(title=f"{report.dataset}: {report.num_queries:,} queries")
    table.add_column("system")
    for metric in report.metrics:
        table.add_column(metric_label(metric), justify="right")
    for system in report.systems:
        name = f"{system} (baseline)" if system == report.baseline else system
        table.add_row(name, *(report.cell(system, m) for m in report.metrics))
    return table


def _default_model(settings: Settings) -> str:
    from services.registry import ModelRegistry

    production = ModelRegistry(settings.registry_dir).pointers().production
    return production or settings.encoder.model


@app.command("eval")
def eval_command(
    dataset: Annotated[
        str,
        typer.Option(
            help="NAME:PATH, e.g. homedepot:../shared/data/homedepot/train.csv, esci:DIR, "
            "wands:DIR, qrels:DIR, pydocs (Python's library docs, built here); a bare NAME is "
            "looked up under $FLYWHEEL_DATA_DIR."
        ),
    ],
    systems: Annotated[
        str,
        typer.Option(
            help="Comma-separated systems: bm25 (Qdrant), bm25s, splade, hybrid (splade and "
            "bm25 fused by search.fusion, as GET /search serves it)."
        ),
    ] = "bm25,splade",
    queries: Annotated[
        int,
        typer.Option(help="Queries sampled for evaluation, at most (all eligible ones if fewer)."),
    ] = 2000,
    seed: Annotated[int, typer.Option(help="Seed of the query sample.")] = 42,
    min_judged: Annotated[int, typer.Option(help="Judged products a query needs.")] = 2,
    model: Annotated[
        str | None,
        typer.Option(
            help="Version (v3) or checkpoint ('bundled', a path) for splade and hybrid; "
            "default: the "
            "production version, else the configured encoder model."
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Report folder (default: $FLYWHEEL_HOME/reports).")
    ] = None,
) -> None:
    """Evaluate retrieval systems on a labelled set; writes a JSON and a Markdown report.

    nDCG@10, MRR@10 and Recall@100 per system, each with a paired t-test against the baseline
    (bm25, else bm25s, else the first system).
    """
    from services.datasets.loader import load_dataset
    from services.evaluation.protocol import evaluate_dataset, parse_systems

    settings = Settings()
    tasks: dict[str, TaskID] = {}
    bar = progress_bar()

    def advance(stage: str, n: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bar.add_task(STAGES.get(stage, stage), total=total)
        bar.advance(tasks[stage], n)

    chosen = parse_systems(systems)
    with console.status(f"loading {dataset}"):
        labelled = load_dataset(dataset)
    console.print(
        f"{labelled.name}: {len(labelled.products):,} products, {len(labelled.queries):,} queries"
    )
    with bar:
        report = evaluate_dataset(
            settings,
            labelled,
            chosen,
            queries=queries,
            seed=seed,
            min_judged=min_judged,
            model=model or _default_model(settings),
            progress=advance,
        )
    json_path, md_path = report.write(out or settings.reports_dir)
    console.print(report_table(report))
    if report.baseline and len(report.systems) > 1:
        console.print(
            f"† p ≤ {report.alpha:g} vs {report.baseline} ({report.stat_test}).", highlight=False
        )
    console.print(f"wrote {json_path} and {md_path}")
