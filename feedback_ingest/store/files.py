"""Durable file steps shared by snapshots and the archive: a file is complete once it has its
final name, because it is written under a temporary name, fsynced, then renamed."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_file(path: Path) -> None:
    """Flush ``path``'s data to disk (DuckDB's COPY does not)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(folder: Path) -> None:
    """Make the names in ``folder`` durable (a rename is only durable once its folder is)."""
    fsync_file(folder)


def publish(tmp: Path, final: Path) -> None:
    """fsync ``tmp``, rename it to ``final`` (atomic on POSIX) and fsync the folder."""
    fsync_file(tmp)
    tmp.replace(final)
    fsync_dir(final.parent)


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so a reader sees the old content or the new, never half."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    publish(tmp, path)
