"""Reading the Parquet snapshots feedback_ingest writes (the retrainer's only view of events).

Layout: ``exports/snapshot-<UTC timestamp>/`` folders, each complete with ``manifest.json``, and
an ``exports/latest`` file naming the newest one (replaced atomically by the writer).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

LATEST = "latest"
PREFIX = "snapshot-"
MANIFEST = "manifest.json"


def snapshot_folders(exports_dir: Path) -> list[Path]:
    """Snapshot folders, oldest first (complete or not)."""
    return sorted(d for d in exports_dir.glob(f"{PREFIX}*") if d.is_dir())


def latest_snapshot(exports_dir: Path) -> Path | None:
    """The newest complete snapshot: the one ``latest`` names, else the newest with a manifest."""
    pointer = exports_dir / LATEST
    if pointer.is_file():
        named = exports_dir / pointer.read_text(encoding="utf-8").strip()
        if (named / MANIFEST).is_file():
            return named
    complete = [d for d in snapshot_folders(exports_dir) if (d / MANIFEST).is_file()]
    return complete[-1] if complete else None


def read_manifest(snapshot: Path) -> dict[str, Any]:
    """The parsed ``manifest.json`` of a snapshot folder."""
    data: dict[str, Any] = json.loads((snapshot / MANIFEST).read_text(encoding="utf-8"))
    return data
