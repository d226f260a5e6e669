"""``flywheel models | promote | rollback | canary … | gc | reconcile``: list the registry,
edit its pointers directly and delete versions (and indexes) nothing needs.

Running servers poll the registry every ``registry_poll_s`` and hot-swap on their own; every
change is appended to ``registry/events.jsonl`` with ``cli:<OS user>`` as the actor.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from flywheel_cli.ui import CtrlC, console, fail
from services.errors import FlywheelError
from services.registry import Expected, ModelRegistry, Pointers, default_actor
from services.settings import Settings

if TYPE_CHECKING:
    from services.index.store import Reconciled

logger = logging.getLogger(__name__)

app = typer.Typer()


def _registry() -> tuple[Settings, ModelRegistry]:
    settings = Settings()
    return settings, ModelRegistry(settings.registry_dir)


def _actor() -> str:
    return f"cli:{default_actor()}"


def _change(action: Callable[[ModelRegistry], Pointers]) -> None:
    """Apply one pointer change to the registry and show the result (exit 2 on refusal)."""
    settings, registry = _registry()
    try:
        pointers = action(registry)
    except FlywheelError as exc:
        raise fail(exc) from exc
    _show(pointers, settings)


ExpectProduction = Annotated[
    str | None,
    typer.Option(
        "--expect-production",
        help="Act only if production is still this version (compare-and-swap).",
    ),
]
ExpectCanary = Annotated[
    str | None,
    typer.Option(
        "--expect-canary",
        help="Act only if the canary is still this version ('none': no canary).",
    ),
]
Force = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Serve a version that has not passed the gate (recorded in events.jsonl).",
    ),
]


def _expected(
    registry: ModelRegistry, production: str | None, canary: str | None
) -> Expected | None:
    """The compare-and-swap guard from --expect-production/--expect-canary."""
    if production is None and canary is None:
        return None
    return Expected.given(registry.pointers(), production, canary)


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
def models() -> None:
    """List registered model versions and the serving pointers."""
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


@app.command()
def promote(
    version: Annotated[
        str | None, typer.Argument(help="Version to make production (default: the canary).")
    ] = None,
    expect_production: ExpectProduction = None,
    expect_canary: ExpectCanary = None,
    force: Force = False,
) -> None:
    """Make the canary (or VERSION) production; the old production stays for rollback."""
    _change(
        lambda registry: registry.promote(
            version,
            actor=_actor(),
            expect=_expected(registry, expect_production, expect_canary),
            force=force,
        )
    )


@app.command()
def rollback(
    expect_production: ExpectProduction = None, expect_canary: ExpectCanary = None
) -> None:
    """Serve the previous production again and stop any canary."""
    _change(
        lambda registry: registry.rollback(
            actor=_actor(), expect=_expected(registry, expect_production, expect_canary)
        )
    )


canary_app = typer.Typer(no_args_is_help=True, help="Run, inspect and decide the canary.")
app.add_typer(canary_app, name="canary")


@canary_app.command("start")
def canary_start(
    version: Annotated[str, typer.Argument(help="Version to serve as canary.")],
    fraction: Annotated[
        float | None,
        typer.Option(help="Share of sessions (0 < F <= 1); default: retrain.canary_fraction."),
    ] = None,
    force: Force = False,
) -> None:
    """Route a share of shoppers (stable per client or session) to VERSION."""
    share = fraction if fraction is not None else Settings().retrain.canary_fraction
    _change(lambda registry: registry.set_canary(version, share, actor=_actor(), force=force))


@canary_app.command("status")
def canary_status() -> None:
    """Online nDCG@10 per arm from the latest snapshot, and what the controller would decide."""
    from retrainer.canary import decisions, run_controller

    settings, registry = _registry()
    _show(registry.pointers(), settings)
    decision = run_controller(settings, apply=False)
    for name, arm in (("production", decision.production), ("canary", decision.canary)):
        if arm is not None:
            console.print(
                f"{name} {arm.version}: {arm.lists} lists, online nDCG@10 {arm.mean:.4f}, "
                f"CTR@10 {arm.ctr_at_10:.3f}"
            )
    console.print(f"controller would: [bold]{decision.decision}[/bold] ({decision.reason})")
    for past in decisions(registry)[-5:]:
        console.print(f"  {past.decided_at:%Y-%m-%d %H:%M} {past.decision}: {past.reason}")


@canary_app.command("evaluate")
def canary_evaluate() -> None:
    """Let the controller decide now (promote, roll back or wait) and apply it."""
    from retrainer.canary import run_controller

    settings, registry = _registry()
    try:
        decision = run_controller(settings)
    except FlywheelError as exc:
        raise fail(exc) from exc
    console.print(f"[bold]{decision.decision}[/bold]: {decision.reason}")
    _show(registry.pointers(), settings)


@canary_app.command("watch")
def canary_watch(
    every: Annotated[
        float, typer.Option(help="Seconds between two looks (each on a snapshot this fresh).")
    ] = 60.0,
    metrics_port: Annotated[
        int, typer.Option(help="Serve Prometheus metrics on this port (0: off).")
    ] = 9466,
) -> None:
    """Judge the canary every EVERY seconds until SIGTERM or Ctrl-C (promote, roll back, wait)."""
    import signal
    import threading

    from retrainer.watch import watch
    from services.metrics import serving_metrics

    settings = Settings()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with serving_metrics("canary", metrics_port), CtrlC(wake=stop) as ctrl_c:
        console.print(f"judging the canary every {every:g} s; metrics on :{metrics_port or '-'}")
        try:
            applied = watch(settings, every_s=every, stop=stop)
        except KeyboardInterrupt:
            stop.set()
            raise
        ctrl_c.check()  # SIGTERM ends cleanly; a Ctrl-C a finaliser swallowed still exits 130
    console.print(f"stopped; {applied} decision(s) applied")


@canary_app.command("promote")
def canary_promote(
    expect_production: ExpectProduction = None, expect_canary: ExpectCanary = None
) -> None:
    """Make the canary production now (manual override of the controller)."""
    _change(
        lambda registry: registry.promote(
            actor=_actor(), expect=_expected(registry, expect_production, expect_canary)
        )
    )


@canary_app.command("rollback")
def canary_rollback(
    expect_production: ExpectProduction = None, expect_canary: ExpectCanary = None
) -> None:
    """Stop the canary: every session goes to production again."""
    _change(
        lambda registry: registry.clear_canary(
            actor=_actor(), expect=_expected(registry, expect_production, expect_canary)
        )
    )


@app.command("gc")
def gc_command(
    keep: Annotated[
        int | None,
        typer.Option(help="Newest versions (and rollback targets) kept; default: keep_versions."),
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="Only list what would be deleted.")] = False,
) -> None:
    """Delete model versions (and their indexes) that neither serve nor may be rolled back to."""
    from retrainer.pipeline import reference_version
    from services.index.store import opened_store, reconcile

    settings, registry = _registry()
    keep = keep if keep is not None else settings.retrain.keep_versions
    try:
        with opened_store(settings) as store:
            doomed = registry.garbage_collect(
                keep,
                store.drop,
                dry_run=dry_run,
                actor=_actor(),
                protect=[reference_version(settings, registry)],
            )
        orphans = reconcile(settings, dry_run=dry_run)
    except FlywheelError as exc:
        raise fail(exc) from exc
    verb = "would delete" if dry_run else "deleted"
    console.print(f"{verb}: {', '.join(doomed) or 'nothing'} (keep = {keep})")
    _report_orphans(orphans, dry_run)


@app.command("reconcile")
def reconcile_command(
    dry_run: Annotated[bool, typer.Option(help="Only list what would be dropped.")] = False,
    adopt: Annotated[
        bool,
        typer.Option(
            help="Take unstamped indexes of registered versions (built before indexes were "
            "stamped) as complete: once, after upgrading a home that served them."
        ),
    ] = False,
) -> None:
    """Drop indexes (Edge shards, server collections) of versions no longer in the registry."""
    from services.index.store import reconcile

    try:
        orphans = reconcile(Settings(), dry_run=dry_run, adopt=adopt)
    except FlywheelError as exc:
        raise fail(exc) from exc
    _report_orphans(orphans, dry_run)


def _report_orphans(found: Reconciled, dry_run: bool) -> None:
    verb = "would drop" if dry_run else "dropped"
    console.print(f"orphan indexes {verb}: {', '.join(found.dropped) or 'none'}")
    if found.adopted:
        verb = "would adopt" if dry_run else "adopted"
        console.print(f"{verb} as complete: {', '.join(found.adopted)}")
    if found.foreign:
        console.print(
            f"left alone, built by another home's registry: {', '.join(found.foreign)} "
            "(give each home its own FLYWHEEL_QDRANT__COLLECTION_PREFIX)"
        )
    if found.unstamped:
        console.print(
            f"left alone, not stamped by any registry: {', '.join(found.unstamped)}; "
            "`--adopt` takes those of registered versions as complete"
        )
