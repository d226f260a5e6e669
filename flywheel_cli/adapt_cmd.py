"""``flywheel adapt``: fit the model to the catalog before the first click, then gate it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import Progress, TaskID

from flywheel_cli.ui import IdColumn, TextColumns, console, fail, progress_bar, read_catalog
from services.errors import FlywheelError
from services.settings import Settings

if TYPE_CHECKING:
    from retrainer.adapt.run import AdaptOutcome, AdaptProgress

app = typer.Typer()

STAGES = {
    "bootstrap": "indexing with the bundled model",
    "generate": "generating queries",
    "negatives": "mining negatives",
    "train": "training",
    "index": "indexing with the candidate",
}


@app.command()
def adapt(
    catalog: Annotated[
        Path | None,
        typer.Option(
            help="Products file (CSV, TSV, JSONL, Parquet); on a new home it is indexed first. "
            "Default: the home's saved catalog."
        ),
    ] = None,
    id_column: IdColumn = None,
    text_column: TextColumns = None,
    pairs: Annotated[
        int | None, typer.Option(min=1, help="Generated training pairs (default from settings).")
    ] = None,
    llm: Annotated[
        bool | None,
        typer.Option(
            "--llm/--no-llm",
            help="Generate queries with the OpenAI-compatible endpoint FLYWHEEL_ADAPT__LLM_URL "
            "(default: when it is set).",
        ),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed (default from settings).")] = None,
    promote: Annotated[
        bool,
        typer.Option(
            help="Make a passing candidate production at once instead of a canary (a new "
            "home has no shoppers to judge a canary)."
        ),
    ] = False,
) -> None:
    """Adapt the model to the catalog alone (generated queries, no labels, no traffic) and roll
    it out through the same gate and card as any candidate."""
    from retrainer.adapt.run import adapt_catalog
    from services.registry import default_actor

    settings = Settings()
    updates = {k: v for k, v in {"pairs": pairs, "seed": seed}.items() if v is not None}
    settings.adapt = settings.adapt.model_copy(update=updates)
    try:
        products = read_catalog(catalog, id_column, text_column)
        with progress_bar() as bar:
            outcome = adapt_catalog(
                settings,
                products,
                use_llm=llm,
                promote=promote,
                progress=stage_bars(bar),
                actor=f"cli:{default_actor()}",
            )
    except FlywheelError as exc:
        raise fail(exc) from exc
    print_outcome(outcome)


def stage_bars(bar: Progress) -> AdaptProgress:
    """A progress callback of ``adapt_catalog``: one bar per stage (with its time estimate)."""
    tasks: dict[str, TaskID] = {}

    def show(stage: str, done: int, total: int) -> None:
        if stage == "gate":
            console.print("· gating against production")
            return
        if stage not in tasks:
            tasks[stage] = bar.add_task(STAGES.get(stage, stage), total=total or None)
        bar.update(tasks[stage], completed=done, total=total or None)

    return show


def print_outcome(outcome: AdaptOutcome) -> None:
    """What adapting made, the catalog guard's figures and the gate's outcome."""
    training = outcome.training
    console.print(
        f"{outcome.version}: {training['pairs']['examples']} triples from "
        f"{training['generator']} queries, {training['result']['steps']} steps in "
        f"{training['result']['seconds']:.0f} s"
    )
    if outcome.guard:
        figures = ", ".join(f"{k} {v:.3f}" for k, v in outcome.guard.items())
        console.print(f"catalog guard nDCG@10: {figures}")
    colour = {"rejected": "red", "skipped": "yellow"}.get(outcome.status, "green")
    console.print(f"[{colour}]{outcome.status}[/{colour}]: {outcome.message}")
    if outcome.report:
        console.print(f"report: {outcome.report}")
