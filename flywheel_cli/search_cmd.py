"""``flywheel index`` (encode and index a catalog) and ``flywheel serve`` (the search API)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from flywheel_cli.ui import IdColumn, TextColumns, console, fail, progress_bar, read_catalog
from services.errors import ConfigError, FlywheelError
from services.settings import Settings

logger = logging.getLogger(__name__)

app = typer.Typer()


@app.command()
def index(
    catalog: Annotated[
        Path | None,
        typer.Option(
            help="Products file: CSV, TSV, JSONL or Parquet (default with --model VERSION: the "
            "home's saved catalog)."
        ),
    ] = None,
    id_column: IdColumn = None,
    text_column: TextColumns = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="A registered version (v3) that does not serve, to build its index, or a "
            "checkpoint ('bundled', a path) to register as a new version first."
        ),
    ] = None,
    adapt: Annotated[
        bool,
        typer.Option(
            help="On a new home, then adapt its first model to the catalog (`flywheel adapt "
            "--promote`: generated queries, no labels; production once its gate passes)."
        ),
    ] = False,
) -> None:
    """Index a catalog: on a new home the bundled model becomes v1 production; on a home that
    serves, a new catalog becomes a new version that production switches to atomically."""
    from services.indexing import index_catalog
    from services.registry import ModelRegistry, default_actor

    settings = Settings()
    actor = f"cli:{default_actor()}"
    try:
        new_home = ModelRegistry(settings.registry_dir).pointers().production is None
        if adapt and not new_home:
            raise ConfigError(
                "--adapt adapts a new home's first model; on a home that serves run "
                "`flywheel adapt` (its candidate becomes a canary)."
            )
        products = read_catalog(catalog, id_column, text_column)
        with progress_bar() as bar:
            task = bar.add_task("indexing", total=len(products) if products else None)
            done = index_catalog(
                settings,
                products,
                model=model,
                progress=lambda n: bar.advance(task, n),
                actor=actor,
            )
    except FlywheelError as exc:
        raise fail(exc) from exc
    if done.registered:
        console.print(f"registered {done.registered!r} as model [bold]{done.version}[/bold]")
    if done.reindexed_from:
        console.print(
            f"the new catalog is [bold]{done.version}[/bold] (the model of "
            f"{done.reindexed_from}); {done.reindexed_from} stays for rollback"
        )
    console.print(
        f"indexed [bold]{done.points}[/bold] products with {done.version}; production = "
        f"{done.production}."
    )
    if not adapt:
        hint = " (or `flywheel adapt --promote` first: README, 'Day one')" if new_home else ""
        console.print(f"Next: `flywheel serve`{hint}.")
        return
    from flywheel_cli.adapt_cmd import print_outcome, stage_bars
    from retrainer.adapt.run import adapt_catalog

    try:
        with progress_bar() as bar:
            outcome = adapt_catalog(settings, promote=True, progress=stage_bars(bar), actor=actor)
    except FlywheelError as exc:
        raise fail(exc) from exc
    print_outcome(outcome)
    console.print("Next: `flywheel serve`.")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default from settings).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default from settings).")] = None,
) -> None:
    """Run the search service (encoder_server) under uvicorn; /metrics on its own port if
    server.metrics_port is set."""
    import uvicorn

    from encoder_server.app import create_app
    from services.metrics import start_metrics_server, stop_metrics_server

    settings = Settings()
    bind = host or settings.server.host
    metrics = settings.server.metrics_port
    server = None
    if metrics is not None:
        # A port of its own, so the shoppers' port exposes no metrics (create_app leaves
        # /metrics out then); Prometheus scrapes this one.
        try:
            server = start_metrics_server("search", metrics, addr=bind)
        except OSError as exc:
            raise ConfigError(
                f"Cannot serve /metrics on {bind}:{metrics} ({exc}); pick a free port in "
                "FLYWHEEL_SERVER__METRICS_PORT, or unset it to serve /metrics on the API port."
            ) from exc
        logger.info("serving /metrics on %s:%d", bind, metrics)
    try:
        uvicorn.run(
            create_app(settings),
            host=bind,
            port=port if port is not None else settings.server.port,
            log_level="info",
            access_log=False,
        )
    finally:
        if server is not None:
            stop_metrics_server(server)
