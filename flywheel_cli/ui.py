"""What every ``flywheel`` command shows and how it ends: console, progress bar, the error path.

Exit codes (the README's table; one place decides them, :class:`FlywheelGroup`):

* 0: done. A retraining run whose candidate the gate rejects, or a canary the controller rolls
  back, is a result, not a failure.
* 1: an unexpected error, i.e. a bug, printed with its traceback; please report it.
* 2: a usage error (unknown option, bad value: click's own code) or an expected error: a
  :class:`~services.errors.FlywheelError`, an invalid ``FLYWHEEL_*`` setting or an invalid
  state file. One line on stderr says what went wrong and what to do; no traceback
  (``flywheel -v`` logs it).
* 130: interrupted with Ctrl-C (128 + SIGINT, the shell's convention).
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from typer.core import TyperGroup

from services.errors import FlywheelError

if TYPE_CHECKING:
    from services.products import Product

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_BUG = 1
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130

console = Console()
"""Results and progress (stdout)."""
err_console = Console(stderr=True)
"""Errors and warnings (stderr), so that a command's output can be piped."""


def progress_bar() -> Progress:
    """The progress bar every long command shows: what, bar, done/total, elapsed, remaining."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )


def fail(exc: Exception, *, about: str = "") -> typer.Exit:
    """Print an expected error in one line, without a traceback; returns the exit (status 2)
    for the caller to raise. Every expected error of every command ends here."""
    text = f"{about}: {exc}" if about else str(exc)
    err_console.print(f"[red]error:[/red] {escape(text)}", highlight=False)
    logger.debug("the error's traceback (shown with -v)", exc_info=exc)
    return typer.Exit(code=EXIT_ERROR)


class CtrlC:
    """Ctrl-C that cannot be lost: the SIGINT handler of a long-running command.

    Python raises :class:`KeyboardInterrupt` wherever the main thread happens to be when SIGINT
    arrives. Inside a finaliser (``__del__``; numba's llvmlite objects are collected during
    every ranx evaluation) the exception is printed as "Exception ignored in ..." and dropped,
    and the command carries on as if no key had been pressed. This handler also records the
    signal, so :meth:`check`, called wherever the command polls, raises it again.

    Use as a context manager in the main thread; elsewhere it installs nothing (Python allows
    signal handlers in the main thread only) and :meth:`check` never raises.
    """

    def __init__(self, wake: threading.Event | None = None) -> None:
        self.pressed = threading.Event()
        """Set once SIGINT has arrived."""
        self._wake = wake
        self._previous: Any = None

    def __enter__(self) -> CtrlC:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        self.pressed.set()
        if self._wake is not None:  # a loop asleep on this event wakes up and checks
            self._wake.set()
        raise KeyboardInterrupt

    def check(self) -> None:
        """Raise :class:`KeyboardInterrupt` if Ctrl-C was pressed, even if its first raise
        was swallowed."""
        if self.pressed.is_set():
            raise KeyboardInterrupt


def interrupted() -> typer.Exit:
    """Say that Ctrl-C stopped the command; returns the exit (status 130) to raise."""
    err_console.print("[yellow]interrupted[/yellow]")
    return typer.Exit(code=EXIT_INTERRUPTED)


class FlywheelGroup(TyperGroup):
    """The root command group: the one place where an error becomes an exit code.

    Sub-groups run inside the root's :meth:`invoke`, so every command of every module gets the
    same treatment without catching anything itself.
    """

    def invoke(self, ctx: Any) -> Any:  # Any: typer's Context type lives in a private module
        """Run the command; turn expected errors and Ctrl-C into the documented exit codes."""
        try:
            return super().invoke(ctx)
        except FlywheelError as exc:
            raise fail(exc) from exc
        except ValidationError as exc:
            # Pydantic validates only what comes from outside here: FLYWHEEL_* variables and
            # the JSON state files (pointers, cards, logs) a person may have edited.
            raise fail(exc, about="an invalid setting or state file (fix or restore it)") from exc
        except KeyboardInterrupt as exc:
            raise interrupted() from exc


IdColumn = Annotated[str | None, typer.Option(help="Column holding product ids.")]
TextColumns = Annotated[
    list[str] | None, typer.Option(help="Column(s) with product text; repeatable.")
]


def read_catalog(
    catalog: Path | None, id_column: str | None, text_column: list[str] | None
) -> list[Product] | None:
    """The products of ``--catalog`` (with ``--id-column``/``--text-column``), or None when no
    file was given (the command then uses the home's saved catalog)."""
    from services.catalog import load_catalog

    if catalog is None:
        return None
    return load_catalog(catalog, id_column=id_column, text_columns=text_column)
