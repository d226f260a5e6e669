"""``flywheel``: the umbrella command line that composes the apps.

Every command group lives in its own module with its own ``typer.Typer()`` called ``app``,
and is added to the root here, explicitly; importing a module registers nothing, and no module
of this package imports this one. The root group (:class:`flywheel_cli.ui.FlywheelGroup`) is the
one error path: a command raises :class:`~services.errors.FlywheelError` and the root prints one
line and exits 2 (the exit codes are in :mod:`flywheel_cli.ui` and the README).

To add a command or a group (e.g. ``flywheel adapt``, ``flywheel reconcile``):

1. Write ``flywheel_cli/<name>_cmd.py`` with ``app = typer.Typer()`` and its commands. Take
   ``console``, ``err_console`` and ``progress_bar`` from :mod:`flywheel_cli.ui`, import heavy
   libraries (PyTorch, the training code) inside the command so ``flywheel --help`` and the
   serving image stay light, and raise ``FlywheelError`` for what the user can fix.
2. Add it below: ``app.add_typer(<name>_cmd.app)`` puts its commands at the top level
   (``flywheel adapt``); ``app.add_typer(<name>_cmd.app, name="<name>")`` makes a group
   (``flywheel <name> start|status``). A new sub-command of an existing group (e.g.
   ``flywheel canary watch``) is one more ``@canary_app.command("watch")`` in its module, or,
   from a module of its own, ``models_cmd.canary_app.command("watch")(watch)`` here.
3. Name it in the README; ``tests/flywheel_cli/test_main.py`` checks that ``flywheel --help``
   lists every command.
"""

from __future__ import annotations

import logging
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler

from flywheel_cli import (
    adapt_cmd,
    demo,
    eval_cmd,
    events_cmd,
    models_cmd,
    retrain_cmd,
    search_cmd,
)
from flywheel_cli.ui import FlywheelGroup

app = typer.Typer(
    cls=FlywheelGroup,
    no_args_is_help=True,
    help="Product search that learns from its shoppers.",
    # A traceback's local variables would print settings, tokens included.
    pretty_exceptions_show_locals=False,
)
app.add_typer(search_cmd.app)  # index, serve
app.add_typer(events_cmd.app)  # broker, ingest, snapshot
app.add_typer(models_cmd.app)  # models, promote, rollback, canary …, gc
app.add_typer(retrain_cmd.app)  # train, retrain
app.add_typer(adapt_cmd.app)  # adapt
app.add_typer(eval_cmd.app)  # eval
app.add_typer(demo.app)  # demo


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


def run() -> None:
    """Console-script entry point (``flywheel``, ``python -m flywheel_cli``)."""
    app()
