"""A durable local spool: events that must survive until Kafka acknowledges them.

encoder_server appends every event it accepts (served lists and POST /events interactions) to
the spool and fsyncs before it answers 2xx for it; a background sender produces from the
spool, and an entry is released only once Kafka acknowledged it (acks=all). Events left when
the process stops or crashes are replayed on the next start. A replayed event Kafka had already
acknowledged arrives twice, which is harmless: ``event_id`` and ``query_id`` are idempotency
keys in DuckDB.

On disk: numbered segment files ``<n>.spool``, each a sequence of records
``crc32 (u32) | key length (u16) | value length (u32) | key | value``. The newest segment is
appended to; older ones are deleted once every record in them is acknowledged. A record torn
by a crash (short, or failing its CRC) ends the segment's replay: it was never fsynced, so no
2xx was answered for it.
"""

from __future__ import annotations

import fcntl
import logging
import os
import struct
import threading
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from services.errors import EventBusError

logger = logging.getLogger(__name__)

_HEADER = struct.Struct("<IHI")
_SUFFIX = ".spool"


@dataclass(frozen=True, slots=True)
class SpoolEntry:
    """A record on disk: its segment tells the spool what an acknowledgement releases."""

    key: bytes
    value: bytes
    segment: int

    @property
    def size(self) -> int:
        """Bytes the record takes on disk."""
        return _HEADER.size + len(self.key) + len(self.value)


class Spool:
    """Append-only segments in a slot of ``root``; one writer thread appends, any thread acks.

    Each process locks a slot (``root/0``, ``root/1``, …; ``flock``) so that servers sharing
    a home never write the same files, and a restarted server takes the first free slot again,
    replaying what a crashed one left there."""

    def __init__(self, root: Path, segment_bytes: int = 4 * 1024 * 1024) -> None:
        self.segment_bytes = segment_bytes
        self._lock = threading.Lock()
        self._unacked: dict[int, int] = {}
        self._bytes = 0
        try:
            self.folder, self._slot_lock = _lock_slot(root)
            self._replay = self._load()
            last = max(self._unacked, default=0)
            self._active_no, self._active = self._open(last + 1)
        except OSError as exc:
            raise EventBusError(
                f"cannot open the event spool in {root}: {exc}; make the folder writable "
                "(FLYWHEEL_HOME) or free disk space, then restart."
            ) from exc
        self._active_size = 0

    @property
    def size(self) -> int:
        """Bytes of entries not yet acknowledged."""
        return self._bytes

    def replayed(self) -> list[SpoolEntry]:
        """Entries left by an earlier process (not acknowledged then); handed out once."""
        found, self._replay = self._replay, []
        return found

    def append(self, records: Sequence[tuple[bytes, bytes]]) -> list[SpoolEntry]:
        """Write ``(key, value)`` records to the current segment; :meth:`sync` makes them
        durable. Raises OSError when the disk refuses them."""
        with self._lock:
            if self._active_size >= self.segment_bytes:
                self._rotate()
            number, fd, start = self._active_no, self._active.fileno(), self._active_size
        entries = [SpoolEntry(key, value, number) for key, value in records]
        data = memoryview(b"".join(_encode(e) for e in entries))
        try:
            while data:
                data = data[os.write(fd, data) :]
        except OSError:
            os.ftruncate(fd, start)  # no torn record before the next append's
            raise
        with self._lock:
            self._unacked[number] = self._unacked.get(number, 0) + len(entries)
            size = sum(e.size for e in entries)
            self._bytes += size
            self._active_size += size
        return entries

    def sync(self) -> None:
        """Fsync the current segment (a group commit for every append before it)."""
        os.fsync(self._active.fileno())

    def ack(self, entry: SpoolEntry) -> None:
        """Kafka acknowledged ``entry``; delete its segment once nothing in it is pending."""
        with self._lock:
            left = self._unacked.get(entry.segment, 0) - 1
            self._bytes -= entry.size
            if left > 0 or entry.segment == self._active_no:
                self._unacked[entry.segment] = max(left, 0)
                return
            self._unacked.pop(entry.segment, None)
        self._path(entry.segment).unlink(missing_ok=True)

    def close(self) -> None:
        """Fsync and close; an empty, fully acknowledged current segment is deleted."""
        with self._lock:
            done = self._unacked.get(self._active_no, 0) == 0
        try:
            self.sync()
        except (OSError, ValueError):
            logger.warning("could not fsync the event spool on close", exc_info=True)
        self._active.close()
        if done:
            self._path(self._active_no).unlink(missing_ok=True)
        self._slot_lock.close()  # releases the flock

    # -- internals ----------------------------------------------------------------------------
    def _path(self, number: int) -> Path:
        return self.folder / f"{number:012d}{_SUFFIX}"

    def _open(self, number: int) -> tuple[int, BinaryIO]:
        handle = self._path(number).open("ab", buffering=0)  # os.write: no buffered half-record
        _fsync_dir(self.folder)  # the new file's name survives a crash too
        return number, handle

    def _rotate(self) -> None:  # with the lock held
        old_no, old = self._active_no, self._active
        os.fsync(old.fileno())
        old.close()
        self._active_no, self._active = self._open(old_no + 1)
        self._active_size = 0
        if self._unacked.get(old_no, 0) == 0:
            self._unacked.pop(old_no, None)
            self._path(old_no).unlink(missing_ok=True)

    def _load(self) -> list[SpoolEntry]:
        entries: list[SpoolEntry] = []
        for path in sorted(self.folder.glob(f"*{_SUFFIX}")):
            number = int(path.stem)
            found = list(_decode(path.read_bytes(), number, path))
            if not found:
                path.unlink()
                continue
            entries += found
            self._unacked[number] = len(found)
            self._bytes += sum(e.size for e in found)
        if entries:
            logger.info("event spool %s: %d events to replay", self.folder, len(entries))
        return entries


def _encode(entry: SpoolEntry) -> bytes:
    crc = zlib.crc32(entry.value, zlib.crc32(entry.key))
    return _HEADER.pack(crc, len(entry.key), len(entry.value)) + entry.key + entry.value


def _decode(data: bytes, number: int, path: Path) -> list[SpoolEntry]:
    entries: list[SpoolEntry] = []
    at = 0
    while at + _HEADER.size <= len(data):
        crc, key_len, value_len = _HEADER.unpack_from(data, at)
        start = at + _HEADER.size
        key = data[start : start + key_len]
        value = data[start + key_len : start + key_len + value_len]
        if len(value) != value_len or zlib.crc32(value, zlib.crc32(key)) != crc:
            break
        entries.append(SpoolEntry(key, value, number))
        at = start + key_len + value_len
    if at != len(data):
        logger.warning(
            "event spool %s: %d bytes after the last whole record dropped (a write torn by a "
            "crash, never acknowledged to a client)",
            path,
            len(data) - at,
        )
    return entries


MAX_SLOTS = 64


def _lock_slot(root: Path) -> tuple[Path, BinaryIO]:
    """The first slot folder under ``root`` no other process holds, and its held lock."""
    for slot in range(MAX_SLOTS):
        folder = root / str(slot)
        folder.mkdir(parents=True, exist_ok=True)
        handle = (folder / ".lock").open("ab")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        return folder, handle
    raise OSError(f"all {MAX_SLOTS} spool slots under {root} are held by running servers")


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
