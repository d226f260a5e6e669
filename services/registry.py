"""The model registry: versioned model folders, their cards, and the serving pointers.

Layout under ``$FLYWHEEL_HOME/registry``::

    pointers.json           {"production": "v3", "canary": "v4", "canary_fraction": 0.1, ...}
    events.jsonl            one line per pointer change: time, action, from, to, actor
    models/v3/              weights, tokenizer, query_encoder.onnx, card.json
    indexes/v3.json         v3's index is complete: its point count and model hash
    registry_id             this registry's id, written into every index it builds

A version can serve (production or canary) only once its index is complete, and it can be
promoted or started as a canary only after passing the gate, unless the operator forces it
(recorded in ``events.jsonl``).

A version becomes visible only by renaming a fully written staging folder into ``models/``, and
pointers change only by write-to-temp + ``os.replace``: a crash at any step leaves the registry
as it was.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import hashlib
import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from services.decisions import GateDecision
from services.errors import FlywheelError, PointersChangedError, RegistryError

logger = logging.getLogger(__name__)

CARD = "card.json"
POINTERS = "pointers.json"
ONNX_FILE = "query_encoder.onnx"
TOKENIZER_FILE = "tokenizer.json"
EVENTS = "events.jsonl"
LOCK = ".lock"
INDEXES = "indexes"
REGISTRY_ID = "registry_id"
VERSION_NAME = re.compile(r"v\d+")
"""Every version is named ``v<N>``; anything else (``../x``, an absolute path) is refused."""
EVENTS_TAIL_BYTES = 256 * 1024
"""How much of the end of ``events.jsonl`` :meth:`ModelRegistry.events` reads for ``last``."""


def check_version_name(version: str) -> str:
    """``version`` if it is a version name (``v1``, ``v2``…), else :class:`RegistryError`."""
    if not isinstance(version, str) or VERSION_NAME.fullmatch(version) is None:
        raise RegistryError(
            f"{version!r} is not a model version; versions are named v1, v2, … "
            "(`flywheel models` lists them)."
        )
    return version


class ModelCard(BaseModel):
    """Everything known about one model version: written when the version is published; the
    gate's decision is added later, only through :meth:`ModelRegistry.record_gate`."""

    version: str
    parent: str | None = None
    source: str = Field(description="Where the weights came from: 'bundled', a path or a run id.")
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    max_query_tokens: int
    max_doc_tokens: int
    files: dict[str, str] = Field(default_factory=dict, description="file name -> sha256")
    training: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    gate: GateDecision | None = Field(
        default=None, description="The gate's decision, added by ModelRegistry.record_gate."
    )

    def model_hash(self) -> str:
        """One digest of every file of the version (their sha256s, by name): what an index
        records to say which model built it."""
        joined = "\n".join(f"{name}:{digest}" for name, digest in sorted(self.files.items()))
        return hashlib.sha256(joined.encode()).hexdigest()


class IndexRecord(BaseModel):
    """A complete index of one version: written by the indexer once every product is stored
    and flushed, and required before the version can serve."""

    version: str
    points: int = Field(ge=0)
    model_hash: str
    registry_id: str
    built_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


@dataclass(frozen=True)
class Expected:
    """The pointers a change was decided on (compare-and-swap): the change applies only if
    production and canary are still these, so a decision about one canary never acts on
    another that replaced it meanwhile."""

    production: str | None
    canary: str | None

    @classmethod
    def given(cls, now: Pointers, production: str | None, canary: str | None) -> Expected | None:
        """The guard an operator asks for (``--expect-production``, ``expect_canary=``...):
        a side not named is taken as it is ``now``; canary ``"none"`` means no canary. None
        when neither is named."""
        if production is None and canary is None:
            return None
        return cls(
            production if production is not None else now.production,
            None if canary == "none" else canary if canary is not None else now.canary,
        )

    def check(self, current: Pointers, action: str) -> None:
        """Raise :class:`PointersChangedError` when ``current`` is not what the decision saw."""
        if (current.production, current.canary) != (self.production, self.canary):
            raise PointersChangedError(
                f"Refusing to {action}: it was decided on production {self.production} + "
                f"canary {self.canary}, but the registry now has production "
                f"{current.production} + canary {current.canary}. Look again "
                "(`flywheel canary status`) and decide on what serves now."
            )


class Pointers(BaseModel):
    """Which versions serve, and the history that makes rollback possible."""

    production: str | None = None
    canary: str | None = None
    canary_fraction: float = Field(default=0.0, ge=0.0, le=1.0)
    history: list[str] = Field(
        default_factory=list, description="Earlier productions, newest last."
    )
    updated_at: datetime | None = None


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so readers see the old or the new file, never a torn one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)


class ModelRegistry:
    """Versions ``v1, v2, …`` under ``root/models`` and the pointers that select them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.models_dir = root / "models"
        self.staging_dir = root / ".staging"

    # -- versions ---------------------------------------------------------------------------
    def versions(self) -> list[str]:
        """Published versions, oldest first."""
        if not self.models_dir.is_dir():
            return []
        found = [p.name for p in self.models_dir.iterdir() if (p / CARD).is_file()]
        return sorted(found, key=_version_number)

    def next_version(self) -> str:
        """The name the next published version will get."""
        taken = [_version_number(v) for v in self.versions()]
        return f"v{max(taken, default=0) + 1}"

    def path(self, version: str) -> Path:
        """Folder of a published version; RegistryError if it does not exist."""
        folder = self.models_dir / check_version_name(version)
        if not (folder / CARD).is_file():
            known = ", ".join(self.versions()) or "none"
            raise RegistryError(
                f"Model version {version!r} is not in the registry at {self.root} "
                f"(known: {known}). Run `flywheel index --catalog FILE` to register the first one."
            )
        return folder

    def card(self, version: str) -> ModelCard:
        """The card of a published version."""
        return ModelCard.model_validate_json((self.path(version) / CARD).read_text("utf-8"))

    @contextlib.contextmanager
    def stage(self) -> Iterator[Path]:
        """A private folder to write a new version into; removed if the block fails."""
        folder = self.staging_dir / uuid.uuid4().hex
        folder.mkdir(parents=True)
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def publish(self, staged: Path, card: ModelCard) -> ModelCard:
        """Hash the staged files, write the card and make the version visible atomically."""
        files = {
            p.name: sha256_file(p)
            for p in sorted(staged.iterdir())
            if p.is_file() and p.name != CARD
        }
        card = card.model_copy(update={"files": files})
        (staged / CARD).write_text(card.model_dump_json(indent=2), encoding="utf-8")
        target = self.models_dir / check_version_name(card.version)
        if target.exists():
            raise RegistryError(f"Version {card.version} already exists; versions are immutable.")
        self.models_dir.mkdir(parents=True, exist_ok=True)
        staged.rename(target)
        logger.info("published model %s (%d files)", card.version, len(files))
        return card

    def verified_file(self, version: str, name: str) -> Path:
        """Path of a version's file after checking its sha256 against the card."""
        path = self.path(version) / name
        expected = self.card(version).files.get(name)
        if expected is None or not path.is_file():
            raise RegistryError(f"{version} has no file {name!r}; re-register this version.")
        actual = sha256_file(path)
        if actual != expected:
            raise RegistryError(
                f"{path} does not match its card (sha256 {actual[:12]}… != {expected[:12]}…); "
                "the file was changed after publishing. Re-register the version."
            )
        return path

    def derive(self, version: str, *, source: str) -> ModelCard:
        """A new version holding ``version``'s files unchanged (hash-checked), e.g. to index a
        new catalog without touching the index that serves. The card keeps the training
        record (its data window is where the next retraining starts) but no gate decision."""
        parent = self.card(version)
        with self.stage() as staged:
            for name in parent.files:
                shutil.copy2(self.verified_file(version, name), staged / name)
            with self.locked():
                card = parent.model_copy(
                    update={
                        "version": self.next_version(),
                        "parent": version,
                        "source": source,
                        "created_at": datetime.now(UTC),
                        "gate": None,
                    }
                )
                return self.publish(staged, card)

    def record_gate(self, version: str, decision: GateDecision) -> ModelCard:
        """Add the gate's decision (and its held-out figures) to ``version``'s card, under the
        lock: the only change a card sees after publishing."""
        metrics = {
            f"{check.name}_ndcg_at_10": check.candidate_value
            for check in decision.checks
            if check.name != "reference"
        }
        with self.locked():
            card = self.card(version)
            updated = card.model_copy(
                update={"gate": decision, "metrics": {**card.metrics, **metrics}}
            )
            atomic_write_text(self.path(version) / CARD, updated.model_dump_json(indent=2))
        return updated

    # -- indexes ----------------------------------------------------------------------------
    def registry_id(self) -> str:
        """This registry's id (created on first use): every index it builds records it, so a
        Qdrant server shared by several homes never serves one home's index to another."""
        path = self.root / REGISTRY_ID
        if not path.is_file():
            self.root.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                # O_EXCL: two processes starting at once agree on one id.
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    handle.write(uuid.uuid4().hex)
                    handle.flush()
                    os.fsync(handle.fileno())
        text = path.read_text("utf-8").strip()
        if not text:  # a crash between create and write: nothing was built under it yet
            path.unlink(missing_ok=True)
            return self.registry_id()
        return text

    def record_index(self, version: str, points: int) -> IndexRecord:
        """Mark ``version``'s index complete (call after every product is stored and
        flushed); from now on the version may serve."""
        record = IndexRecord(
            version=version,
            points=points,
            model_hash=self.card(version).model_hash(),
            registry_id=self.registry_id(),
        )
        (self.root / INDEXES).mkdir(parents=True, exist_ok=True)
        atomic_write_text(self._index_path(version), record.model_dump_json(indent=2))
        return record

    def index_record(self, version: str) -> IndexRecord | None:
        """The completion record of ``version``'s index; None while it is not complete."""
        path = self._index_path(version)
        if not path.is_file():
            return None
        return IndexRecord.model_validate_json(path.read_text("utf-8"))

    def forget_index(self, version: str) -> None:
        """``version``'s index is about to be rebuilt or deleted: it may not serve meanwhile.
        Refused for a version that serves or that a rollback would serve."""
        with self.locked():
            current = self.pointers()
            if version in (current.production, current.canary, *current.history):
                role = (
                    "production"
                    if version == current.production
                    else "canary"
                    if version == current.canary
                    else "a rollback target"
                )
                raise RegistryError(
                    f"{version} serves ({role}); its index cannot be rebuilt in place. Index the "
                    "catalog as a new version instead (`flywheel index --catalog FILE`)."
                )
            self._index_path(version).unlink(missing_ok=True)

    def _index_path(self, version: str) -> Path:
        return self.root / INDEXES / f"{check_version_name(version)}.json"

    def _require_index(self, version: str, action: str) -> None:
        """Refuse to serve ``version`` until its index is recorded complete."""
        self.path(version)
        if self.index_record(version) is None:
            raise RegistryError(
                f"Refusing to {action}: {version} has no complete search index, so servers "
                f"would keep serving what they serve. Build it first: `flywheel index --model "
                f"{version}`."
            )

    def _require_servable(self, version: str, current: Pointers, action: str, force: bool) -> bool:
        """Refuse to serve ``version`` without a complete index; refuse a version that has not
        passed the gate unless ``force``. An earlier production, or the canary being promoted
        (it got there through the gate or by a recorded force), needs no gate decision.
        True when the change is forced past the gate."""
        self._require_index(version, action)
        gate = self.card(version).gate
        if (gate is not None and gate.passed) or version in current.history:
            return False
        if version == current.canary:
            return False
        if not force:
            why = (
                "it was never gated"
                if gate is None
                else f"the gate rejected it ({'; '.join(gate.reasons)})"
            )
            raise RegistryError(
                f"Refusing to {action}: {why}. Gate it with `flywheel retrain`, or pass "
                "--force to serve it anyway (recorded in events.jsonl)."
            )
        logger.warning("%s forced past the gate", action)
        return True

    # -- pointers ---------------------------------------------------------------------------
    def pointers(self) -> Pointers:
        """Current pointers (empty when nothing has been published yet)."""
        path = self.root / POINTERS
        if not path.is_file():
            return Pointers()
        return Pointers.model_validate_json(path.read_text("utf-8"))

    def write_pointers(
        self,
        pointers: Pointers,
        *,
        action: str = "write",
        actor: str | None = None,
        **detail: Any,
    ) -> Pointers:
        """Replace the pointers atomically, after checking every named version exists, and
        append the change (with ``detail``) to ``events.jsonl``."""
        for version in (pointers.production, pointers.canary):
            if version is not None:
                self.path(version)
        before = self.pointers()
        pointers = pointers.model_copy(update={"updated_at": datetime.now(UTC)})
        atomic_write_text(self.root / POINTERS, pointers.model_dump_json(indent=2))
        self.record(action, before, pointers, actor=actor, **detail)
        return pointers

    def set_production(
        self, version: str, *, actor: str | None = None, expect: Expected | None = None
    ) -> Pointers:
        """Make ``version`` production, remembering the previous one for rollback; with
        ``expect``, only if the pointers are still those. The low-level switch (a new home, a
        rollout the retrainer gated, a re-indexed production): it needs a complete index but
        no gate decision; operators promote (:meth:`promote`)."""
        with self.locked():
            current = self.pointers()
            if expect is not None:
                expect.check(current, f"make {version} production")
            self._require_index(version, f"make {version} production")
            return self._set_production(version, "set_production", actor)

    def pointer_snapshot(self) -> str:
        """A cheap fingerprint of the pointers file, for pollers."""
        path = self.root / POINTERS
        return json.dumps([path.stat().st_mtime_ns, path.stat().st_size]) if path.exists() else ""

    def _set_production(
        self, version: str, action: str, actor: str | None, **detail: Any
    ) -> Pointers:
        current = self.pointers()
        history = list(current.history)
        if current.production and current.production != version:
            history.append(current.production)
        canary = None if current.canary == version else current.canary
        return self.write_pointers(
            current.model_copy(
                update={
                    "production": version,
                    "history": history,
                    "canary": canary,
                    "canary_fraction": current.canary_fraction if canary else 0.0,
                }
            ),
            action=action,
            actor=actor,
            **detail,
        )

    # -- operations (each one read-modify-write under the lock, recorded in events.jsonl) ----
    def set_canary(
        self,
        version: str,
        fraction: float,
        *,
        actor: str | None = None,
        expect: Expected | None = None,
        force: bool = False,
    ) -> Pointers:
        """Route ``fraction`` of sessions (0 < fraction <= 1) to ``version``; with ``expect``,
        only if the pointers are still those. ``version`` needs a complete index and a passed
        gate, unless ``force`` (recorded)."""
        if not 0.0 < fraction <= 1.0:
            raise RegistryError(
                f"Canary fraction {fraction} is outside (0, 1]; pass e.g. 0.1 for 10% of "
                "sessions, or clear the canary (`flywheel canary rollback`) to stop it."
            )
        with self.locked():
            current = self.pointers()
            if expect is not None:
                expect.check(current, f"start canary {version}")
            if version == current.production:
                raise RegistryError(
                    f"{version} is already production; a canary must be another version "
                    f"(known: {', '.join(self.versions())})."
                )
            forced = self._require_servable(version, current, f"start canary {version}", force)
            update = {"canary": version, "canary_fraction": fraction}
            return self.write_pointers(
                current.model_copy(update=update),
                action="canary",
                actor=actor,
                **({"forced": True} if forced else {}),
            )

    def clear_canary(self, *, actor: str | None = None, expect: Expected | None = None) -> Pointers:
        """Stop the canary: every session goes to production again; with ``expect``, only if
        the pointers are still those."""
        with self.locked():
            current = self.pointers()
            if expect is not None:
                expect.check(current, "stop the canary")
            if current.canary is None:
                return current
            update = {"canary": None, "canary_fraction": 0.0}
            return self.write_pointers(
                current.model_copy(update=update), action="clear_canary", actor=actor
            )

    def promote(
        self,
        version: str | None = None,
        *,
        actor: str | None = None,
        expect: Expected | None = None,
        force: bool = False,
    ) -> Pointers:
        """Make the canary (or ``version``) production; the old production goes to history.
        With ``expect``, only if production and canary are still those (compare-and-swap).

        The version needs a complete index, and a passed gate unless it is the canary or an
        earlier production; ``force`` overrides the gate (recorded), never the index."""
        with self.locked():
            current = self.pointers()
            if expect is not None:
                expect.check(current, f"promote {version or current.canary}")
            target = version or current.canary
            if target is None:
                raise RegistryError(
                    "There is no canary to promote. Name a version instead "
                    f"(`flywheel promote VERSION`; known: {', '.join(self.versions()) or 'none'})."
                )
            if target == current.production:
                return current
            forced = self._require_servable(target, current, f"promote {target}", force)
            return self._set_production(
                target, "promote", actor, **({"forced": True} if forced else {})
            )

    def rollback(self, *, actor: str | None = None, expect: Expected | None = None) -> Pointers:
        """Production := the last history entry (taken off the history); clears the canary.
        With ``expect``, only if production and canary are still those (compare-and-swap)."""
        with self.locked():
            current = self.pointers()
            if expect is not None:
                expect.check(current, "roll back")
            if not current.history:
                raise RegistryError(
                    f"Nothing to roll back to: production {current.production} has no earlier "
                    "production in the history. Promote a version instead (`flywheel promote "
                    "VERSION`)."
                )
            update = {
                "production": current.history[-1],
                "history": current.history[:-1],
                "canary": None,
                "canary_fraction": 0.0,
            }
            return self.write_pointers(
                current.model_copy(update=update), action="rollback", actor=actor
            )

    def garbage_collect(
        self,
        keep: int,
        drop_index: Callable[[str], None] | None = None,
        *,
        dry_run: bool = False,
        actor: str | None = None,
        protect: Collection[str | None] = (),
    ) -> list[str]:
        """Delete versions nobody needs; return them (oldest first).

        A version is kept if it is production or canary, one of the ``keep`` newest versions,
        one of the last ``keep`` history entries (so ``keep`` rollbacks in a row work), or in
        ``protect`` (the gate's fixed reference, so that losses cannot add up unseen).
        Everything else goes: its index record, its index (``drop_index(version)``: the
        backend's, :func:`services.index.store.index_store`) and its model folder. History
        entries of deleted versions are dropped first, so the pointers never name a missing
        version. A server that still has a deleted version
        loaded (it polls the registry) keeps serving it from memory until it swaps.
        """
        if keep < 1:
            raise RegistryError(f"keep={keep}: keep at least the newest version (keep >= 1).")
        with self.locked():
            current = self.pointers()
            versions = self.versions()
            kept = {current.production, current.canary, *versions[-keep:], *protect}
            kept.update(current.history[-keep:])
            doomed = [v for v in versions if v not in kept]
            if dry_run or not doomed:
                return doomed
            history = [v for v in current.history if v not in doomed]
            if history != current.history:
                self.write_pointers(
                    current.model_copy(update={"history": history}), action="gc", actor=actor
                )
            for version in doomed:
                self._delete(version, drop_index)
            self.record("delete", current, current, actor=actor, deleted=doomed)
        logger.info("garbage-collected %s (kept %s)", doomed, sorted(v for v in kept if v))
        return doomed

    def _delete(self, version: str, drop_index: Callable[[str], None] | None) -> None:
        # The record goes first: a half-deleted index must never look complete. Renaming out
        # of models/ makes the version vanish atomically; then free the space.
        self._index_path(version).unlink(missing_ok=True)
        if drop_index is not None:
            try:
                drop_index(version)
            except FlywheelError as exc:  # e.g. the Qdrant server is down: reconcile later
                logger.warning(
                    "could not drop the index of %s (%s); `flywheel reconcile` drops it later",
                    version,
                    exc,
                )
        trash = self.staging_dir / f"deleted-{version}-{uuid.uuid4().hex[:8]}"
        trash.parent.mkdir(parents=True, exist_ok=True)
        (self.models_dir / version).rename(trash)
        shutil.rmtree(trash, ignore_errors=True)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the registry's exclusive file lock (read-modify-write of the pointers, GC)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / LOCK).open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # -- the timeline -----------------------------------------------------------------------
    def record(
        self,
        action: str,
        before: Pointers,
        after: Pointers,
        *,
        actor: str | None = None,
        **detail: Any,
    ) -> None:
        """Append one line to ``events.jsonl``: time, action, from, to, actor (append-only)."""
        line = {
            "time": datetime.now(UTC).isoformat(),
            "action": action,
            "from": _serving(before),
            "to": _serving(after),
            "actor": actor or default_actor(),
            **detail,
        }
        self.root.mkdir(parents=True, exist_ok=True)
        # One write of one short line with O_APPEND: concurrent writers never interleave.
        with (self.root / EVENTS).open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(line) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def events(self, last: int | None = None) -> list[dict[str, Any]]:
        """Recorded pointer changes, oldest first: all of them, or the ``last`` ones read from
        the end of the log only (at most :data:`EVENTS_TAIL_BYTES`)."""
        path = self.root / EVENTS
        if not path.is_file():
            return []
        if last is None:
            return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line]
        with path.open("rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - EVENTS_TAIL_BYTES))
            tail = handle.read()
        lines = tail.splitlines()
        if size > EVENTS_TAIL_BYTES:
            lines = lines[1:]  # the first line may be cut
        return [json.loads(line) for line in lines[-last:] if line.strip()] if last > 0 else []


def default_actor() -> str:
    """Who changes the registry when the caller does not say: the OS user."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _serving(pointers: Pointers) -> dict[str, Any]:
    return {
        "production": pointers.production,
        "canary": pointers.canary,
        "canary_fraction": pointers.canary_fraction,
    }


def _version_number(version: str) -> int:
    try:
        return int(version.removeprefix("v"))
    except ValueError:
        return -1
