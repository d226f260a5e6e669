"""``flywheel broker``, ``ingest`` and ``snapshot``: the shopper-event path, Kafka to DuckDB
to Parquet."""

from __future__ import annotations

from typing import Annotated

import typer

from flywheel_cli.ui import console, err_console
from services.settings import Settings

app = typer.Typer()


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
        err_console.print(
            f"[yellow]FLYWHEEL_KAFKA__BOOTSTRAP_SERVERS={kafka.bootstrap_servers} is set: the "
            "services use that cluster, not this broker.[/yellow]"
        )
    run_broker_forever(
        port if port is not None else kafka.embedded_port,
        kafka.topics(),
        host or kafka.embedded_host,
    )


@app.command()
def ingest(
    idle_exit_s: Annotated[
        float | None, typer.Option(help="Exit after this many seconds without events.")
    ] = None,
) -> None:
    """Consume shopper events from Kafka into DuckDB, exactly once (the single writer)."""
    from feedback_ingest.service import run_ingest

    run_ingest(Settings(), idle_exit_s=idle_exit_s)


@app.command()
def snapshot(
    wait_s: Annotated[float, typer.Option(help="How long to wait for a running ingest.")] = 60,
) -> None:
    """Write a Parquet snapshot of events and derived data under $FLYWHEEL_HOME/exports."""
    from feedback_ingest.service import request_snapshot
    from feedback_ingest.store import EventStore, StoreLockedError, write_snapshot

    settings = Settings()
    try:
        with EventStore(settings.store_path, settings.ingest.store) as store:
            folder = write_snapshot(
                store, settings.exports_dir, keep=settings.ingest.store.keep_snapshots
            )
    except StoreLockedError:
        # A running `flywheel ingest` owns the file: ask it, and wait for the new snapshot.
        folder = request_snapshot(settings, wait_s)
    console.print(f"snapshot written: {folder}")
