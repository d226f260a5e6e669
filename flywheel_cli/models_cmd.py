"""``flywheel promote | rollback | canary | gc``: edit the registry pointers directly.

Running servers poll the registry every ``registry_poll_s`` and hot-swap on their own; every
change is appended to ``registry/events.jsonl`` with the OS user as the actor.
"""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from flywheel_cli.main import app, console, fail
from services.errors import FlywheelError
from services.registry import ModelRegistry, Pointers, default_actor
from services.settings import Settings

logger = logging.getLogger(__name__)


def _registry() -> tuple[Settings, ModelRegistry]:
    settings = Settings()
    return settings, ModelRegistry(settings.registry_dir)


def _actor() -> str:
    return f"cli:{default_actor()}"


def _show(pointers: Pointers, settings: Settings) -> None:
    canary = (
        f", canary = {pointers.canary} ({pointers.canary_fraction:.0%} of sessions)"
        if pointers.canary
        else ""
    )
    console.print(
        f"production = [bold]{pointers.production}[/bold]{canary}; rollback targets: "
        f"{', '.join(reversed(pointers.history)) or 'none'}. Servers switch within "
        f"{settings.server.registry_poll_s:g} s."
    )


@app.command()
def promote(
    version: Annotated[
        str | None, typer.Argument(help="Version to make production (default: the canary).")
    ] = None,
) -> None:
    """Make the canary (or VERSION) production; the old production stays for rollback."""
    settings, registry = _registry()
    try:
        pointers = registry.promote(version, actor=_actor())
    except FlywheelError as exc:
        raise fail(exc) from exc
    _show(pointers, settings)


@app.command()
def rollback() -> None:
    """Serve the previous production again and stop any canary."""
    settings, registry = _registry()
    try:
        pointers = registry.rollback(actor=_actor())
    except FlywheelError as exc:
        raise fail(exc) from exc
    _show(pointers, settings)


@app.command()
def canary(
    version: Annotated[str | None, typer.Argument(help="Version to serve as canary.")] = None,
    fraction: Annotated[
        float | None,
        typer.Option(help="Share of sessions (0 < F <= 1); default: retrain.canary_fraction."),
    ] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Stop the canary.")] = False,
) -> None:
    """Route a share of sessions (stable per session_id) to VERSION, or --clear the canary."""
    settings, registry = _registry()
    try:
        if clear:
            pointers = registry.clear_canary(actor=_actor())
        elif version is None:
            raise typer.BadParameter("name the VERSION to canary, or pass --clear")
        else:
            share = fraction if fraction is not None else settings.retrain.canary_fraction
            pointers = registry.set_canary(version, share, actor=_actor())
    except FlywheelError as exc:
        raise fail(exc) from exc
    _show(pointers, settings)


@app.command("gc")
def gc_command(
    keep: Annotated[
        int | None,
        typer.Option(help="Newest versions (and rollback targets) kept; default: keep_versions."),
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="Only list what would be deleted.")] = False,
) -> None:
    """Delete model versions (and their indexes) that neither serve nor may be rolled back to."""
    settings, registry = _registry()
    keep = keep if keep is not None else settings.retrain.keep_versions
    index_dir = settings.index_dir if settings.qdrant.url is None else None
    try:
        doomed = registry.garbage_collect(keep, index_dir, dry_run=dry_run, actor=_actor())
        if doomed and not dry_run and settings.qdrant.url is not None:
            _drop_collections(settings, doomed)
    except FlywheelError as exc:
        raise fail(exc) from exc
    verb = "would delete" if dry_run else "deleted"
    console.print(f"{verb}: {', '.join(doomed) or 'nothing'} (keep = {keep})")


def _drop_collections(settings: Settings, versions: list[str]) -> None:
    """On a Qdrant server, the deleted versions' collections go too."""
    from services.index.factory import server_client
    from services.index.server import QdrantServerIndex

    client = server_client(settings)
    try:
        for version in versions:
            QdrantServerIndex(client, settings.qdrant.collection_prefix, version).drop()
            logger.info("dropped the collection of %s", version)
    finally:
        client.close()
