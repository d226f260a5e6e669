"""The model registry: versioned model folders, their cards, and the serving pointers.

Layout under ``$FLYWHEEL_HOME/registry``::

    pointers.json           {"production": "v3", "canary": "v4", "canary_fraction": 0.1, ...}
    events.jsonl            one line per pointer change: time, action, from, to, actor
    models/v3/              weights, tokenizer, query_encoder.onnx, card.json

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
import shutil
import uuid
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from services.errors import PointersChangedError, RegistryError

logger = logging.getLogger(__name__)

CARD = "card.json"
POINTERS = "pointers.json"
ONNX_FILE = "query_encoder.onnx"
TOKENIZER_FILE = "tokenizer.json"
EVENTS = "events.jsonl"
LOCK = ".lock"


class ModelCard(BaseModel):
    """Everything known about one model version (written once, when it is published)."""

    version: str
    parent: str | None = None
    source: str = Field(description="Where the weights came from: 'bundled', a path or a run id.")
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    max_query_tokens: int
    max_doc_tokens: int
    files: dict[str, str] = Field(default_factory=dict, description="file name -> sha256")
    training: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    gate: dict[str, Any] | None = None


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
        folder = self.models_dir / version
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
        target = self.models_dir / card.version
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

    # -- pointers ---------------------------------------------------------------------------
    def pointers(self) -> Pointers:
        """Current pointers (empty when nothing has been published yet)."""
        path = self.root / POINTERS
        if not path.is_file():
            return Pointers()
        return Pointers.model_validate_json(path.read_text("utf-8"))

    def write_pointers(
        self, pointers: Pointers, *, action: str = "write", actor: str | None = None
    ) -> Pointers:
        """Replace the pointers atomically, after checking every named version exists, and
        append the change to ``events.jsonl``."""
        for version in (pointers.production, pointers.canary):
            if version is not None:
                self.path(version)
        before = self.pointers()
        pointers = pointers.model_copy(update={"updated_at": datetime.now(UTC)})
        atomic_write_text(self.root / POINTERS, pointers.model_dump_json(indent=2))
        self.record(action, before, pointers, actor=actor)
        return pointers

    def set_production(
        self, version: str, *, actor: str | None = None, expect: Expected | None = None
    ) -> Pointers:
        """Make ``version`` production, remembering the previous one for rollback; with
        ``expect``, only if the pointers are still those."""
        with self.locked():
            if expect is not None:
                expect.check(self.pointers(), f"make {version} production")
            return self._set_production(version, "set_production", actor)

    def pointer_snapshot(self) -> str:
        """A cheap fingerprint of the pointers file, for pollers."""
        path = self.root / POINTERS
        return json.dumps([path.stat().st_mtime_ns, path.stat().st_size]) if path.exists() else ""

    def _set_production(self, version: str, action: str, actor: str | None) -> Pointers:
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
        )

    # -- operations (each one read-modify-write under the lock, recorded in events.jsonl) ----
    def set_canary(
        self,
        version: str,
        fraction: float,
        *,
        actor: str | None = None,
        expect: Expected | None = None,
    ) -> Pointers:
        """Route ``fraction`` of sessions (0 < fraction <= 1) to ``version``; with ``expect``,
        only if the pointers are still those."""
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
            update = {"canary": version, "canary_fraction": fraction}
            return self.write_pointers(
                current.model_copy(update=update), action="canary", actor=actor
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
    ) -> Pointers:
        """Make the canary (or ``version``) production; the old production goes to history.
        With ``expect``, only if production and canary are still those (compare-and-swap)."""
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
            return self._set_production(target, "promote", actor)

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
        index_dir: Path | None = None,
        *,
        dry_run: bool = False,
        actor: str | None = None,
        protect: Collection[str | None] = (),
    ) -> list[str]:
        """Delete versions nobody needs; return them (oldest first).

        A version is kept if it is production or canary, one of the ``keep`` newest versions,
        one of the last ``keep`` history entries (so ``keep`` rollbacks in a row work), or in
        ``protect`` (the gate's fixed reference, so that losses cannot add up unseen).
        Everything else goes: its model folder and, with ``index_dir``, its Edge index at
        ``index_dir/<version>``. History entries of deleted versions are dropped first, so the
        pointers never name a missing version. A server that still has a deleted version
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
                self._delete(version, index_dir)
            self.record("delete", current, current, actor=actor, deleted=doomed)
        logger.info("garbage-collected %s (kept %s)", doomed, sorted(v for v in kept if v))
        return doomed

    def _delete(self, version: str, index_dir: Path | None) -> None:
        # Renaming out of models/ makes the version vanish atomically; then free the space.
        trash = self.staging_dir / f"deleted-{version}-{uuid.uuid4().hex[:8]}"
        trash.parent.mkdir(parents=True, exist_ok=True)
        (self.models_dir / version).rename(trash)
        shutil.rmtree(trash, ignore_errors=True)
        if index_dir is not None and (index_dir / version).exists():
            shutil.rmtree(index_dir / version, ignore_errors=True)

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

    def events(self) -> list[dict[str, Any]]:
        """Every recorded pointer change, oldest first."""
        path = self.root / EVENTS
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line]


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
