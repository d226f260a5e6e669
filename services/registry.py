"""The model registry: versioned model folders, their cards, and the serving pointers.

Layout under ``$FLYWHEEL_HOME/registry``::

    pointers.json           {"production": "v3", "canary": "v4", "canary_fraction": 0.1, ...}
    models/v3/              weights, tokenizer, query_encoder.onnx, card.json

A version becomes visible only by renaming a fully written staging folder into ``models/``, and
pointers change only by write-to-temp + ``os.replace``: a crash at any step leaves the registry
as it was.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from services.errors import RegistryError

logger = logging.getLogger(__name__)

CARD = "card.json"
POINTERS = "pointers.json"
ONNX_FILE = "query_encoder.onnx"
TOKENIZER_FILE = "tokenizer.json"


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

    def write_pointers(self, pointers: Pointers) -> Pointers:
        """Replace the pointers atomically, after checking every named version exists."""
        for version in (pointers.production, pointers.canary):
            if version is not None:
                self.path(version)
        pointers = pointers.model_copy(update={"updated_at": datetime.now(UTC)})
        atomic_write_text(self.root / POINTERS, pointers.model_dump_json(indent=2))
        return pointers

    def set_production(self, version: str) -> Pointers:
        """Make ``version`` production, remembering the previous one for rollback."""
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
            )
        )

    def pointer_snapshot(self) -> str:
        """A cheap fingerprint of the pointers file, for pollers."""
        path = self.root / POINTERS
        return json.dumps([path.stat().st_mtime_ns, path.stat().st_size]) if path.exists() else ""


def _version_number(version: str) -> int:
    try:
        return int(version.removeprefix("v"))
    except ValueError:
        return -1
