"""Registry operations: canary, promote, rollback, garbage collection, the events timeline."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from services.errors import PointersChangedError, RegistryError
from services.registry import Expected, ModelRegistry, Pointers
from tests.services.test_registry import passed_gate, publish_dummy


def registry_with(tmp_path: Path, n: int) -> ModelRegistry:
    registry = ModelRegistry(tmp_path / "registry")
    for _ in range(n):
        publish_dummy(registry)
    return registry


def test_canary_then_promote_keeps_history(tmp_path: Path) -> None:
    registry = registry_with(tmp_path, 3)
    registry.set_production("v1", actor="test")
    pointers = registry.set_canary("v2", 0.25, actor="test")
    assert (pointers.production, pointers.canary, pointers.canary_fraction) == ("v1", "v2", 0.25)
    pointers = registry.promote(actor="test")
    assert (pointers.production, pointers.canary, pointers.canary_fraction) == ("v2", None, 0.0)
    assert pointers.history == ["v1"]
    pointers = registry.promote("v3", actor="test")
    assert pointers.production == "v3" and pointers.history == ["v1", "v2"]
    assert registry.promote("v3") == registry.pointers()  # already production: a no-op


def test_canary_is_validated(tmp_path: Path) -> None:
    registry = registry_with(tmp_path, 2)
    registry.set_production("v1")
    with pytest.raises(RegistryError, match="already production"):
        registry.set_canary("v1", 0.1)
    with pytest.raises(RegistryError, match=r"outside \(0, 1\]"):
        registry.set_canary("v2", 0.0)
    with pytest.raises(RegistryError, match="not in the registry"):
        registry.set_canary("v9", 0.1)
    with pytest.raises(RegistryError, match="no canary to promote"):
        registry.promote()
    registry.set_canary("v2", 1.0)
    assert registry.clear_canary().canary is None
    assert registry.pointers().canary_fraction == 0.0


def test_rollback_walks_back_through_history(tmp_path: Path) -> None:
    registry = registry_with(tmp_path, 3)
    registry.set_production("v1")
    registry.promote("v2")
    registry.promote("v3")
    registry.set_canary("v1", 0.1)
    pointers = registry.rollback()
    assert (pointers.production, pointers.canary, pointers.history) == ("v2", None, ["v1"])
    pointers = registry.rollback()
    assert (pointers.production, pointers.history) == ("v1", [])
    with pytest.raises(RegistryError, match="Nothing to roll back to"):
        registry.rollback()


def test_every_pointer_change_is_a_line_in_events_jsonl(tmp_path: Path) -> None:
    registry = registry_with(tmp_path, 2)
    registry.set_production("v1", actor="alice")
    registry.set_canary("v2", 0.5, actor="bob")
    registry.promote(actor="carol")
    registry.rollback(actor="dave")
    lines = (registry.root / "events.jsonl").read_text().splitlines()
    events = [json.loads(line) for line in lines]
    assert events == registry.events()
    assert [(e["action"], e["actor"]) for e in events] == [
        ("set_production", "alice"),
        ("canary", "bob"),
        ("promote", "carol"),
        ("rollback", "dave"),
    ]
    assert events[0]["from"]["production"] is None and events[0]["to"]["production"] == "v1"
    assert events[1]["to"] == {"production": "v1", "canary": "v2", "canary_fraction": 0.5}
    assert events[2]["from"]["canary"] == "v2" and events[2]["to"]["production"] == "v2"
    assert events[3]["to"]["production"] == "v1"
    assert all(e["time"].endswith("+00:00") for e in events)


def with_indexes(registry: ModelRegistry, index_dir: Path) -> Callable[[str], None]:
    """Fake Edge shard folders for every version, and the ``drop_index`` that removes one."""
    for v in registry.versions():
        (index_dir / v / "segments").mkdir(parents=True)
    return lambda version: shutil.rmtree(index_dir / version)


def test_gc_keeps_serving_newest_and_rollback_targets(tmp_path: Path) -> None:
    registry = registry_with(tmp_path, 8)
    index_dir = tmp_path / "index"
    drop = with_indexes(registry, index_dir)
    for v in ["v1", "v2", "v3"]:
        registry.promote(v)  # history v1, v2; production v3
    registry.set_canary("v4", 0.1)
    # keep=2: production v3, canary v4, newest v7 v8, last two history entries v1 v2.
    assert registry.garbage_collect(2, drop, dry_run=True) == ["v5", "v6"]
    assert len(registry.versions()) == 8
    assert registry.garbage_collect(2, drop) == ["v5", "v6"]
    assert registry.versions() == ["v1", "v2", "v3", "v4", "v7", "v8"]
    assert sorted(p.name for p in index_dir.iterdir()) == registry.versions()
    assert registry.pointers().history == ["v1", "v2"]
    assert registry.garbage_collect(2, drop) == []


def test_gc_trims_history_so_rollback_stays_valid(tmp_path: Path) -> None:
    registry = registry_with(tmp_path, 7)
    index_dir = tmp_path / "index"
    drop = with_indexes(registry, index_dir)
    for v in ["v1", "v2", "v3", "v4"]:
        registry.promote(v)  # history v1, v2, v3; production v4
    registry.set_canary("v5", 0.1)
    deleted = registry.garbage_collect(1, drop, actor="gc-test")
    # keep=1: production v4, canary v5, newest v7, the last history entry v3.
    assert deleted == ["v1", "v2", "v6"]
    assert registry.versions() == ["v3", "v4", "v5", "v7"]
    assert sorted(p.name for p in index_dir.iterdir()) == ["v3", "v4", "v5", "v7"]
    assert registry.pointers().history == ["v3"]
    assert not list(registry.staging_dir.iterdir())
    gc_events = [e for e in registry.events() if e["actor"] == "gc-test"]
    assert [e["action"] for e in gc_events] == ["gc", "delete"]
    assert gc_events[-1]["deleted"] == ["v1", "v2", "v6"]
    assert registry.rollback().production == "v3"
    # After the rollback v4 and v5 serve no more and are neither newest nor rollback targets.
    assert registry.garbage_collect(1, drop) == ["v4", "v5"]
    with pytest.raises(RegistryError, match="keep at least"):
        registry.garbage_collect(0)


def test_cli_commands_edit_the_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flywheel_cli.main import app

    registry = registry_with(tmp_path, 3)
    registry.set_production("v1")
    monkeypatch.setenv("FLYWHEEL_HOME", str(tmp_path))
    runner = CliRunner()
    result = runner.invoke(app, ["canary", "start", "v2", "--fraction", "0.2"])
    assert result.exit_code == 0, result.output
    assert registry.pointers().canary == "v2"
    assert runner.invoke(app, ["promote"]).exit_code == 0
    assert registry.pointers().production == "v2"
    assert runner.invoke(app, ["rollback"]).exit_code == 0
    assert registry.pointers().production == "v1"
    failed = runner.invoke(app, ["rollback"])
    assert failed.exit_code == 2 and "Nothing to roll back to" in failed.output
    assert "would delete: v2" in runner.invoke(app, ["gc", "--keep", "1", "--dry-run"]).output
    result = runner.invoke(app, ["gc", "--keep", "1"])
    assert result.exit_code == 0, result.output
    assert "deleted: v2" in result.output
    assert registry.versions() == ["v1", "v3"]
    assert all(e["actor"].startswith("cli:") for e in registry.events()[1:])


def test_pointer_changes_compare_and_swap_on_the_judged_versions(tmp_path: Path) -> None:
    registry = registry_with(tmp_path, 4)
    registry.set_production("v1", actor="test")
    registry.set_canary("v2", 0.5, actor="test")
    judged = Expected("v1", "v2")
    # The canary judged was v2; v3 replaced it meanwhile: neither promote nor stop acts on v3.
    registry.set_canary("v3", 0.5, actor="retrainer")
    before = registry.pointers()
    changes: list[Callable[[], Pointers]] = [
        lambda: registry.promote("v2", expect=judged),
        lambda: registry.promote(expect=judged),
        lambda: registry.clear_canary(expect=judged),
        lambda: registry.rollback(expect=judged),
        lambda: registry.set_canary("v4", 0.5, expect=judged),
    ]
    for change in changes:
        with pytest.raises(PointersChangedError, match="production v1 \\+ canary v3"):
            change()
        assert registry.pointers() == before
    # On the versions that still serve, the change applies.
    after = registry.promote(expect=Expected("v1", "v3"))
    assert (after.production, after.canary, after.history) == ("v3", None, ["v1"])
    assert registry.rollback(expect=Expected("v3", None)).production == "v1"


def test_gc_keeps_the_protected_reference(tmp_path: Path) -> None:
    registry = registry_with(tmp_path, 5)
    registry.set_production("v5", actor="test")
    assert registry.garbage_collect(1, dry_run=True) == ["v1", "v2", "v3", "v4"]
    assert registry.garbage_collect(1, protect=["v1", None]) == ["v2", "v3", "v4"]
    assert registry.versions() == ["v1", "v5"]


def test_cli_promote_and_rollback_refuse_when_the_expected_versions_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flywheel_cli.main import app

    registry = registry_with(tmp_path, 3)
    registry.set_production("v1")
    registry.set_canary("v3", 0.1)
    monkeypatch.setenv("FLYWHEEL_HOME", str(tmp_path))
    runner = CliRunner()
    refused = runner.invoke(app, ["canary", "promote", "--expect-canary", "v2"])
    assert refused.exit_code == 2, refused.output
    assert "Refusing to promote v3" in " ".join(refused.output.split())
    refused = runner.invoke(app, ["rollback", "--expect-production", "v2"])
    assert refused.exit_code == 2 and registry.pointers().canary == "v3"
    done = runner.invoke(app, ["canary", "promote", "--expect-canary", "v3"])
    assert done.exit_code == 0, done.output
    assert registry.pointers().production == "v3"
    stopped = runner.invoke(app, ["canary", "rollback", "--expect-canary", "none"])
    assert stopped.exit_code == 0, stopped.output


@pytest.mark.parametrize("name", ["../x", "/tmp/evil", "v1/../v2", "V1", "v", "latest"])
def test_version_names_are_checked(tmp_path: Path, name: str) -> None:
    """A folder outside models/ holding a card.json never becomes a version."""
    registry = registry_with(tmp_path, 1)
    registry.set_production("v1")
    evil = tmp_path / "x"
    evil.mkdir()
    (evil / "card.json").write_text('{"version": "x"}')
    with pytest.raises(RegistryError, match="not a model version"):
        registry.promote(name, force=True)
    with pytest.raises(RegistryError, match="not a model version"):
        registry.set_canary(name, 0.5, force=True)
    with pytest.raises(RegistryError, match="not a model version"):
        registry.path(name)
    assert registry.pointers().production == "v1"


def test_promote_needs_a_passed_gate_unless_forced(tmp_path: Path) -> None:
    registry = registry_with(tmp_path, 1)
    registry.set_production("v1")
    untested = publish_dummy(registry, servable=False).version  # v2: `flywheel train`
    with pytest.raises(RegistryError, match="v2 has no complete search index"):
        registry.promote(untested, force=True)  # --force never overrides the index
    registry.record_index(untested, points=0)
    with pytest.raises(RegistryError, match=r"never gated.*--force"):
        registry.promote(untested)
    with pytest.raises(RegistryError, match="never gated"):
        registry.set_canary(untested, 0.5)
    assert registry.pointers().production == "v1"
    rejected = publish_dummy(registry, servable=False).version  # v3, rejected by the gate
    registry.record_index(rejected, points=0)
    registry.record_gate(
        rejected,
        passed_gate(rejected).model_copy(update={"passed": False, "reasons": ["worse"]}),
    )
    with pytest.raises(RegistryError, match=r"the gate rejected it \(worse\)"):
        registry.promote(rejected)
    forced = registry.promote(untested, force=True, actor="ops")
    assert forced.production == untested
    last = registry.events()[-1]
    assert (last["action"], last["actor"], last.get("forced")) == ("promote", "ops", True)
    # An earlier production needs no gate decision: promoting it back is a rollback.
    assert registry.promote("v1").production == "v1"
    assert "forced" not in registry.events()[-1]
    # A canary started by a recorded force is promoted by the controller without another.
    registry.set_canary(rejected, 0.5, force=True)
    assert registry.events()[-1].get("forced") is True
    assert registry.promote().production == rejected


def test_cli_train_then_promote_is_refused_until_indexed_and_gated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flywheel_cli.main import app

    registry = registry_with(tmp_path, 1)
    registry.set_production("v1")
    publish_dummy(registry, servable=False)  # what `flywheel train` leaves: v2, no index
    monkeypatch.setenv("FLYWHEEL_HOME", str(tmp_path))
    runner = CliRunner()
    refused = runner.invoke(app, ["promote", "v2"])
    assert refused.exit_code == 2
    assert "no complete search index" in refused.output and "Traceback" not in refused.output
    registry.record_index("v2", points=0)
    refused = runner.invoke(app, ["promote", "v2"])
    assert refused.exit_code == 2 and "--force" in refused.output
    assert registry.pointers().production == "v1"
    result = runner.invoke(app, ["promote", "v2", "--force"])
    assert result.exit_code == 0, result.output
    assert registry.pointers().production == "v2"
    assert registry.events()[-1]["forced"] is True


def test_events_tail_reads_only_the_end(tmp_path: Path) -> None:
    registry = registry_with(tmp_path, 2)
    registry.set_production("v1")
    for _ in range(3000):  # about 600 KB of log, more than the tail read
        registry.set_canary("v2", 0.5)
    everything = registry.events()
    assert registry.events(last=5) == everything[-5:]
    assert registry.events(last=0) == []
