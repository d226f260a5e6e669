"""Where a home's indexes live, behind one interface: create, open, drop and list them, on
Qdrant Edge (one shard folder per version under ``index_dir``) or a Qdrant server (one
collection per version, ``<prefix>__<version>``, behind the ``<prefix>`` alias). Callers never
branch on the backend.

An index may serve only when it is complete and belongs to this home: :func:`open_index`
checks the index's own stamp against the registry's record (the registry's id, the model's hash
and the point count), so a half-built index, one rebuilt under a running server, or one that
another home built under the same collection name on a shared server is refused.
"""

from __future__ import annotations

import logging
import math
import re
import shutil
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from qdrant_client import QdrantClient

from services.errors import SearchIndexError
from services.index.base import IndexStamp, ProductIndex
from services.index.edge import EdgeIndex, read_edge_stamp
from services.index.server import QdrantServerIndex, collection_name, stamp_of
from services.registry import ModelRegistry, check_version_name
from services.settings import Settings

logger = logging.getLogger(__name__)

_VERSION = r"v\d+"


def server_client(settings: Settings) -> QdrantClient:
    """A client for the configured Qdrant server (requires ``settings.qdrant.url``)."""
    qdrant = settings.qdrant
    api_key = qdrant.api_key.get_secret_value() if qdrant.api_key else None
    return QdrantClient(url=qdrant.url, api_key=api_key, timeout=math.ceil(qdrant.timeout_s))


class IndexStore(ABC):
    """The indexes of one home on one backend."""

    @abstractmethod
    def create(self, version: str, owner: str, *, overwrite: bool = False) -> ProductIndex:
        """A new, empty index of ``version``, stamped with the ``owner`` registry's id."""

    @abstractmethod
    def open(self, version: str) -> ProductIndex:
        """``version``'s index as it is, unchecked (:func:`open_index` checks it)."""

    def open_private(self, version: str, scratch: Path) -> ProductIndex:
        """``version``'s index for a job that reads it beside a running server (unchecked).
        A server collection takes any number of readers, so it is opened directly."""
        return self.open(version)

    @abstractmethod
    def drop(self, version: str) -> None:
        """Delete ``version``'s index if it exists."""

    @abstractmethod
    def stamps(self) -> dict[str, IndexStamp | None]:
        """Every index present, by version, with its stamp (None: unstamped)."""

    def set_alias(self, version: str) -> None:  # noqa: B027 - optional: Edge has no aliases
        """Point the backend's production alias at ``version`` (a server's outside readers)."""

    def close(self) -> None:  # noqa: B027 - optional: Edge holds nothing between calls
        """Release connections."""


class EdgeStore(IndexStore):
    """Qdrant Edge shards under ``index_dir/<version>``."""

    def __init__(self, settings: Settings) -> None:
        self.root = settings.index_dir
        self.fields = settings.search.filter_fields

    def create(self, version: str, owner: str, *, overwrite: bool = False) -> ProductIndex:
        index = EdgeIndex.create(self.root / version, version, self.fields, overwrite=overwrite)
        index.write_stamp(IndexStamp(version=version, registry_id=owner))
        return index

    def open(self, version: str) -> ProductIndex:
        return EdgeIndex.open(self.root / check_version_name(version), version)

    def open_private(self, version: str, scratch: Path) -> ProductIndex:
        """A copy under ``scratch``: a shard takes one handle at a time, and a serving shard is
        never written after it is built, so copying it is safe."""
        copy = scratch / "indexes" / check_version_name(version)
        shutil.copytree(self.root / version, copy, dirs_exist_ok=False)
        return EdgeIndex.open(copy, version)

    def drop(self, version: str) -> None:
        shutil.rmtree(self.root / check_version_name(version), ignore_errors=True)

    def stamps(self) -> dict[str, IndexStamp | None]:
        if not self.root.is_dir():
            return {}
        return {
            p.name: read_edge_stamp(p)
            for p in sorted(self.root.iterdir())
            if p.is_dir() and re.fullmatch(_VERSION, p.name)
        }


class ServerStore(IndexStore):
    """Collections ``<prefix>__<version>`` on the configured Qdrant server. Each index it
    creates or opens gets a client of its own (closed with the index); the store keeps one for
    listing, dropping and aliases."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.prefix = settings.qdrant.collection_prefix
        self.client = server_client(settings)

    def create(self, version: str, owner: str, *, overwrite: bool = False) -> ProductIndex:
        qdrant = self.settings.qdrant
        index = QdrantServerIndex.create(
            server_client(self.settings),
            self.prefix,
            version,
            self.settings.search.filter_fields,
            shard_number=qdrant.shard_number,
            replication_factor=qdrant.replication_factor,
            overwrite=overwrite,
        )
        index.write_stamp(IndexStamp(version=version, registry_id=owner))
        return index

    def open(self, version: str) -> ProductIndex:
        return QdrantServerIndex.open(
            server_client(self.settings), self.prefix, check_version_name(version)
        )

    def drop(self, version: str) -> None:
        name = collection_name(self.prefix, check_version_name(version))
        try:
            if self.client.collection_exists(name):
                self.client.delete_collection(name)
                logger.info("dropped collection %s", name)
        except Exception as exc:
            raise SearchIndexError(
                f"Could not drop collection '{name}': {exc}. Check the Qdrant server "
                "(FLYWHEEL_QDRANT__URL); `flywheel reconcile` retries."
            ) from exc

    def stamps(self) -> dict[str, IndexStamp | None]:
        pattern = re.compile(re.escape(self.prefix) + "__(" + _VERSION + ")")
        try:
            names = [c.name for c in self.client.get_collections().collections]
            found = {}
            for name in sorted(names):
                match = pattern.fullmatch(name)
                if match:
                    found[match[1]] = stamp_of(self.client.get_collection(name).config.metadata)
        except Exception as exc:
            raise SearchIndexError(
                f"Could not list the collections on the Qdrant server: {exc}. Check "
                "FLYWHEEL_QDRANT__URL and the API key."
            ) from exc
        return found

    def set_alias(self, version: str) -> None:
        QdrantServerIndex(self.client, self.prefix, version).set_alias(self.prefix)

    def close(self) -> None:
        self.client.close()


def index_store(settings: Settings) -> IndexStore:
    """The store the settings name: a Qdrant server when ``qdrant.url`` is set, else Edge."""
    return EdgeStore(settings) if settings.qdrant.url is None else ServerStore(settings)


@contextmanager
def opened_store(settings: Settings) -> Iterator[IndexStore]:
    """:func:`index_store`, closed on exit."""
    store = index_store(settings)
    try:
        yield store
    finally:
        store.close()


def check_stamp(index: ProductIndex, registry: ModelRegistry, version: str) -> None:
    """Raise :class:`SearchIndexError` unless ``version``'s index is complete, built by this
    registry for the model the registry has, and holds the recorded number of points."""
    record = registry.index_record(version)
    if record is None and index.read_stamp() is None:
        raise SearchIndexError(
            f"The index of {version} has no completion stamp: it was built before indexes were "
            "stamped, or its build died. If it is complete (it served before this upgrade), "
            f"adopt it with `flywheel reconcile --adopt`; else rebuild it with `flywheel index "
            f"--model {version}`."
        )
    if record is None:
        raise SearchIndexError(
            f"The index of {version} is not complete (the registry has no record of it "
            f"finishing): it may still be building or its build failed. Rebuild it with "
            f"`flywheel index --model {version}`."
        )
    stamp = index.read_stamp()
    if stamp is None or stamp.registry_id != record.registry_id:
        raise SearchIndexError(
            f"The index found for {version} was not built by this home's registry "
            f"({record.registry_id}); another home may share the Qdrant server and collection "
            "prefix. Give each home its own FLYWHEEL_QDRANT__COLLECTION_PREFIX and rebuild "
            f"(`flywheel index --model {version}`)."
        )
    if not stamp.complete or stamp.model_hash != record.model_hash:
        raise SearchIndexError(
            f"The index of {version} was not completed for the model {version} now has "
            "(its model hash differs or it is unfinished). Rebuild it with "
            f"`flywheel index --model {version}`."
        )
    points = index.count()
    if points != record.points or stamp.points != record.points:
        raise SearchIndexError(
            f"The index of {version} holds {points} products but was completed with "
            f"{record.points}; it changed after it was built. Rebuild it with "
            f"`flywheel index --model {version}`."
        )


def open_index(settings: Settings, version: str, *, scratch: Path | None = None) -> ProductIndex:
    """``version``'s index, checked complete and this home's (:func:`check_stamp`); with
    ``scratch``, a private copy where the backend needs one (:meth:`IndexStore.open_private`)."""
    registry = ModelRegistry(settings.registry_dir)
    store = index_store(settings)
    index = store.open(version) if scratch is None else store.open_private(version, scratch)
    try:
        check_stamp(index, registry, version)
    except BaseException:
        index.close()
        raise
    return index


@dataclass(frozen=True, slots=True)
class Reconciled:
    """What :func:`reconcile` found: indexes dropped (or to drop), adopted, and left alone."""

    dropped: list[str]
    foreign: list[str]
    unstamped: list[str]
    adopted: list[str]


def reconcile(settings: Settings, *, dry_run: bool = False, adopt: bool = False) -> Reconciled:
    """Drop this home's orphan indexes: those of versions no longer in the registry (deleted
    by garbage collection while the backend was down, or left by a failed build).

    Indexes stamped by another registry are left alone (another home shares the server and
    prefix), and so are unstamped ones (built before stamps): both are listed. With ``adopt``
    (once, after upgrading a home whose indexes predate stamps), an unstamped index of a
    registered version is taken as complete as it is: stamped and recorded with its count.
    """
    registry = ModelRegistry(settings.registry_dir)
    owner = registry.registry_id()
    with registry.locked(), opened_store(settings) as store:
        versions = set(registry.versions())
        dropped: list[str] = []
        foreign: list[str] = []
        unstamped: list[str] = []
        adopted: list[str] = []
        for version, stamp in store.stamps().items():
            if stamp is None:
                if adopt and version in versions:
                    adopted.append(version)
                    if not dry_run:
                        _adopt(store, registry, version, owner)
                else:
                    unstamped.append(version)
                continue
            if stamp.registry_id != owner:
                foreign.append(version)
                continue
            if version in versions:
                continue
            dropped.append(version)
            if not dry_run:
                store.drop(version)
    logger.info(
        "reconcile: %s %s; adopted %s; foreign %s; unstamped %s",
        "would drop" if dry_run else "dropped",
        dropped,
        adopted,
        foreign,
        unstamped,
    )
    return Reconciled(dropped, foreign, unstamped, adopted)


def _adopt(store: IndexStore, registry: ModelRegistry, version: str, owner: str) -> None:
    index = store.open(version)
    try:
        points = index.count()
        model_hash = registry.card(version).model_hash()
        index.write_stamp(
            IndexStamp(version=version, registry_id=owner, model_hash=model_hash, points=points)
        )
    finally:
        index.close()
    registry.record_index(version, points)
    logger.warning("adopted the unstamped index of %s as complete (%d products)", version, points)
