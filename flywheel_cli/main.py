"""``flywheel``: index a catalog, serve search, evaluate, inspect models."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from services.errors import FlywheelError
from services.settings import Settings

app = typer.Typer(no_args_is_help=True, help="Product search that learns from its shoppers.")
console = Console()
logger = logging.getLogger("flywheel")


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    """Configure logging once for every command."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=Console(stderr=True), show_path=False)],
    )
    # kafka-python logs every reconnect attempt at ERROR while a broker is down; our own
    # code reports the backlog instead.
    logging.getLogger("kafka").setLevel(logging.CRITICAL if not verbose else logging.INFO)
    logging.getLogger("bm25s").setLevel(logging.WARNING)


def progress_bar() -> Progress:
    """The progress bar every long command shows."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
    )


def fail(exc: FlywheelError) -> typer.Exit:
    """Print a Flywheel error without a traceback and exit with status 2."""
    console.print(f"[red]error:[/red] {exc}")
    return typer.Exit(code=2)


@app.command()
def index(
    catalog: Annotated[Path, typer.Option(help="Products file: CSV, JSONL or Parquet.")],
    id_column: Annotated[str | None, typer.Option(help="Column holding product ids.")] = None,
    text_column: Annotated[
        list[str] | None, typer.Option(help="Column(s) with product text; repeatable.")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="A registered version (v3) to index with, or a checkpoint ('bundled', a path) "
            "to register as a new version first."
        ),
    ] = None,
) -> None:
    """Encode and index a catalog; on a new home, register the bundled model as v1 production."""
    from services.catalog import load_catalog
    from services.catalog_store import save_products
    from services.indexing import index_products
    from services.registry import ModelRegistry

    settings = Settings()
    registry = ModelRegistry(settings.registry_dir)
    try:
        products = load_catalog(catalog, id_column=id_column, text_columns=text_column)
        version = registry.pointers().production
        if model in registry.versions():
            version, model = model, None
        new = model is not None or version is None
        if new:
            # Only registering needs PyTorch; indexing with a registered version runs on ONNX.
            from services.encoding.package import register_pretrained

            card = register_pretrained(registry, model or settings.encoder.model, settings.encoder)
            version = card.version
            console.print(f"registered {card.source!r} as model [bold]{version}[/bold]")
        assert version is not None
        save_products(products, settings.home)
        with progress_bar() as bar:
            task = bar.add_task(f"indexing with {version}", total=len(products))
            idx = index_products(
                settings, version, products, progress=lambda n: bar.advance(task, n)
            )
            count = idx.count()
            idx.close()
        if new and registry.pointers().production is None:
            registry.set_production(version)
    except FlywheelError as exc:
        raise fail(exc) from exc
    console.print(
        f"indexed [bold]{count}[/bold] products with {version}; production = "
        f"{registry.pointers().production}. Next: `flywheel serve`."
    )


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default from settings).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default from settings).")] = None,
) -> None:
    """Run the search service (encoder_server) under uvicorn."""
    import uvicorn

    from encoder_server.app import create_app

    settings = Settings()
    uvicorn.run(
        create_app(settings),
        host=host or settings.server.host,
        port=port if port is not None else settings.server.port,
        log_level="info",
        access_log=False,
    )


@app.command()
def broker(
    port: Annotated[
        int | None, typer.Option(help="Port (default: FLYWHEEL_KAFKA__EMBEDDED_PORT, 9092).")
    ] = None,
    host: Annotated[str | None, typer.Option(help="Bind address.")] = None,
) -> None:
    """Run the embedded Kafka-compatible broker (tansu, memory storage) with Flywheel's topics."""
    from services.kafka.broker import run_broker_forever

    kafka = Settings().kafka
    if kafka.bootstrap_servers:
        console.print(
            f"[yellow]FLYWHEEL_KAFKA__BOOTSTRAP_SERVERS={kafka.bootstrap_servers} is set: the "
            "services use that cluster, not this broker.[/yellow]"
        )
    try:
        run_broker_forever(
            port if port is not None else kafka.embedded_port,
            kafka.topics(),
            host or kafka.embedded_host,
        )
    except FlywheelError as exc:
        raise fail(exc) from exc


@app.command()
def ingest(
    idle_exit_s: Annotated[
        float | None, typer.Option(help="Exit after this many seconds without events.")
    ] = None,
) -> None:
    """Consume shopper events from Kafka into DuckDB, exactly once (the single writer)."""
    from feedback_ingest.service import run_ingest

    try:
        run_ingest(Settings(), idle_exit_s=idle_exit_s)
    except FlywheelError as exc:
        raise fail(exc) from exc


@app.command()
def snapshot(
    wait_s: Annotated[float, typer.Option(help="How long to wait for a running ingest.")] = 60,
) -> None:
    """Write a Parquet snapshot of events and derived data under $FLYWHEEL_HOME/exports."""
    from feedback_ingest.service import exports_dir, request_snapshot, store_path
    from feedback_ingest.store import EventStore, StoreLockedError, write_snapshot

    settings = Settings()
    try:
        try:
            with EventStore(store_path(settings), settings.ingest.store) as store:
                folder = write_snapshot(
                    store, exports_dir(settings), keep=settings.ingest.store.keep_snapshots
                )
        except StoreLockedError:
            # A running `flywheel ingest` owns the file: ask it, and wait for the new snapshot.
            folder = request_snapshot(settings, wait_s)
    except FlywheelError as exc:
        raise fail(exc) from exc
    console.print(f"snapshot written: {folder}")


@app.command()
def models() -> None:
    """List registered model versions and the serving pointers."""
    from services.registry import ModelRegistry

    registry = ModelRegistry(Settings().registry_dir)
    pointers = registry.pointers()
    table = Table("version", "role", "parent", "source", "created")
    for version in registry.versions():
        card = registry.card(version)
        role = (
            "production"
            if version == pointers.production
            else f"canary ({pointers.canary_fraction:.0%})"
            if version == pointers.canary
            else ""
        )
        table.add_row(
            version, role, card.parent or "", card.source, f"{card.created_at:%Y-%m-%d %H:%M}"
        )
    console.print(table)


def run() -> None:
    """Console-script entry point: register the commands that live in their own modules."""
    from flywheel_cli import demo, models_cmd, retrain_cmd  # noqa: F401 - register commands
    from flywheel_cli.eval_cmd import eval_command

    app.command("eval")(eval_command)
    app()
