"""The `flywheel` command line: every group reachable, one error path, documented exit codes."""

from __future__ import annotations

import ast
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from flywheel_cli.main import app
from flywheel_cli.ui import EXIT_BUG, EXIT_ERROR, EXIT_INTERRUPTED, CtrlC, FlywheelGroup
from services.errors import RegistryError

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = (
    *("index", "serve", "broker", "ingest", "snapshot", "models", "eval", "train", "retrain"),
    *("promote", "rollback", "canary", "gc", "reconcile", "demo", "adapt"),
)
CANARY = ("start", "status", "evaluate", "watch", "promote", "rollback")


def invoke(*args: str) -> typer.testing.Result:
    return CliRunner().invoke(app, list(args))


def test_help_lists_every_command_and_each_is_reachable() -> None:
    listed = invoke("--help")
    assert listed.exit_code == 0, listed.output
    for name in COMMANDS:
        assert f" {name} " in listed.output, f"`flywheel --help` does not list {name}"
        shown = invoke(name, "--help")
        assert shown.exit_code == 0, f"{name}: {shown.output}"
        assert "Usage:" in shown.output
    canary = invoke("canary", "--help")
    for name in CANARY:
        assert f" {name} " in canary.output
        assert invoke("canary", name, "--help").exit_code == 0


def imports_main(node: ast.AST) -> bool:
    if isinstance(node, ast.Import):
        return any(a.name == "flywheel_cli.main" for a in node.names)
    if isinstance(node, ast.ImportFrom):
        return node.module == "flywheel_cli.main" or (
            node.module == "flywheel_cli" and any(a.name == "main" for a in node.names)
        )
    return False


def test_no_module_of_the_cli_imports_main() -> None:
    """Commands are added in main.py; a module importing main back registers by side effect."""
    offenders = [
        path.name
        for path in sorted((ROOT / "flywheel_cli").rglob("*.py"))
        if path.name != "__main__.py"
        and any(imports_main(node) for node in ast.walk(ast.parse(path.read_text("utf-8"))))
    ]
    assert not offenders


# --- the error path ---------------------------------------------------------------------------


def toy_app() -> typer.Typer:
    toy = typer.Typer(cls=FlywheelGroup)

    @toy.command()
    def expected() -> None:
        raise RegistryError("Nothing to roll back to; run `flywheel models` [to see why].")

    @toy.command()
    def interrupted() -> None:
        raise KeyboardInterrupt

    @toy.command()
    def bug() -> None:
        raise RuntimeError("a bug")

    return toy


def test_the_error_path_maps_errors_to_the_documented_exit_codes() -> None:
    runner = CliRunner()
    expected = runner.invoke(toy_app(), ["expected"])
    assert expected.exit_code == EXIT_ERROR == 2
    # One line, markup-like text kept as written, no traceback.
    assert "error: Nothing to roll back to; run `flywheel models` [to see why]." in (
        " ".join(expected.output.split())
    )
    assert "Traceback" not in expected.output
    stopped = runner.invoke(toy_app(), ["interrupted"])
    assert stopped.exit_code == EXIT_INTERRUPTED == 130
    assert "interrupted" in stopped.output
    bug = runner.invoke(toy_app(), ["bug"])
    assert bug.exit_code == EXIT_BUG == 1
    assert isinstance(bug.exception, RuntimeError)  # a bug keeps its traceback
    assert runner.invoke(toy_app(), ["nonsense"]).exit_code == 2  # usage error


class _Finaliser:
    """An object whose ``__del__`` is running when Ctrl-C arrives (as numba's are, in ranx)."""

    def __del__(self) -> None:
        signal.raise_signal(signal.SIGINT)


def test_a_ctrl_c_swallowed_by_a_finaliser_is_not_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    swallowed: list[type[BaseException] | None] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda hook: swallowed.append(hook.exc_type))
    wake = threading.Event()
    with CtrlC(wake=wake) as ctrl_c:
        ctrl_c.check()  # nothing pressed yet
        _Finaliser()  # collected at once: SIGINT arrives inside __del__
        # Python dropped the KeyboardInterrupt ("Exception ignored in ...") and went on...
        assert swallowed == [KeyboardInterrupt]
        # ...but the press is remembered, a waiting loop was woken, and the next check stops.
        assert ctrl_c.pressed.is_set() and wake.is_set()
        with pytest.raises(KeyboardInterrupt):
            ctrl_c.check()
    # Outside the block the previous handler is back: Python's own KeyboardInterrupt.
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def broken_registry(home: Path, *, pointers: str | None = None, card: str | None = None) -> Path:
    registry = home / "registry"
    (registry / "models" / "v1").mkdir(parents=True)
    if pointers is not None:
        (registry / "pointers.json").write_text(pointers, "utf-8")
    if card is not None:
        (registry / "models" / "v1" / "card.json").write_text(card, "utf-8")
    return home


@pytest.mark.parametrize(
    ("command", "state"),
    [
        (["models"], {"pointers": '{"production": '}),
        (["models"], {"card": "{}"}),
        (["canary", "status"], {"pointers": "[1, 2]"}),
        (["promote", "v1"], {"pointers": "{bad"}),
    ],
)
def test_a_broken_registry_is_an_expected_error(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    command: list[str],
    state: dict[str, str],
) -> None:
    monkeypatch.setenv("FLYWHEEL_HOME", str(broken_registry(tmp_path, **state)))
    result = invoke(*command)
    assert result.exit_code == 2, result.output
    assert "error: an invalid setting or state file" in " ".join(result.output.split())
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_an_invalid_setting_is_an_expected_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLYWHEEL_SERVER__PORT", "eighty")
    result = invoke("models")
    assert result.exit_code == 2
    assert "server.port" in result.output


def test_demo_exits_2_on_an_expected_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLYWHEEL_HOME", str(tmp_path))
    monkeypatch.setenv("FLYWHEEL_SIMULATOR__DATASET", f"qrels:{tmp_path / 'missing'}")
    result = invoke("demo", "--port", "0", "--storefront-port", "0")
    assert result.exit_code == 2, result.output
    assert "error:" in result.output


def test_the_installed_command_prints_no_traceback(tmp_path: Path) -> None:
    """The real entry point, as a shell runs it: one error line on stderr, status 2."""
    home = broken_registry(tmp_path, pointers="{bad")
    for command in (["models"], ["canary", "status"]):
        done = subprocess.run(
            [sys.executable, "-m", "flywheel_cli", *command],
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "FLYWHEEL_HOME": str(home)},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=ROOT,
        )
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr + done.stdout
        assert done.stderr.startswith("error: an invalid setting or state file")
