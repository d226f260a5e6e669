"""One error hierarchy for the whole project.

Every message says what went wrong *and* what to do next, because these errors reach shop
owners on the command line and storefront developers as HTTP 4xx bodies.
"""

from __future__ import annotations


class FlywheelError(Exception):
    """Base class of every error Flywheel raises on purpose."""


class ConfigError(FlywheelError):
    """A setting is missing or inconsistent."""


class CatalogError(FlywheelError):
    """A product catalog file cannot be read or has no usable id/text columns."""


class DatasetError(FlywheelError):
    """A labelled data set (Home Depot, ESCI, WANDS, qrels, pydocs) cannot be read."""


class ModelError(FlywheelError):
    """A SPLADE model cannot be loaded, exported or verified."""


class RegistryError(FlywheelError):
    """The model registry is missing a version, a pointer or a file, or a hash does not match."""


class PointersChangedError(RegistryError):
    """A compare-and-swap pointer change found other versions serving than it was decided on."""


class SearchIndexError(FlywheelError):
    """The search index (Qdrant Edge or server) is missing or failed."""


class EventBusError(FlywheelError):
    """The Kafka broker cannot be started or reached, or a topic cannot be created."""


class QueryError(FlywheelError):
    """A search request is invalid; the message tells the caller what to fix (HTTP 4xx)."""


class SnapshotError(FlywheelError):
    """No event-store snapshot could be found or obtained."""
