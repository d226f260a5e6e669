"""Errors of the event store; each message says what to do next."""

from __future__ import annotations

from services.errors import FlywheelError


class StoreError(FlywheelError):
    """The DuckDB event store cannot be opened, migrated or written."""


class StoreLockedError(StoreError):
    """Another process holds the DuckDB file open for writing (DuckDB allows one writer)."""


class StoreSchemaError(StoreError):
    """The file's schema version does not match the migrations this code knows."""
