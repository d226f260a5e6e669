"""The DuckDB event store of feedback_ingest: migrations, the exactly-once batch writer,
derived tables kept current incrementally (judgments, IPS weights, training pairs, online
metrics), retention of raw events into a Parquet archive, and incremental Parquet snapshots."""

from feedback_ingest.store.derived import DerivedReport, refresh_derived
from feedback_ingest.store.errors import StoreError, StoreLockedError, StoreSchemaError
from feedback_ingest.store.retention import RetentionReport, apply_retention
from feedback_ingest.store.rows import DeadLetter, Sourced
from feedback_ingest.store.snapshot import write_snapshot
from feedback_ingest.store.writer import BatchResult, EventStore
from services.ingest_settings import ClickModelSettings, DerivedSettings, StoreSettings
from services.snapshots import latest_snapshot, read_manifest

__all__ = [
    "BatchResult",
    "ClickModelSettings",
    "DeadLetter",
    "DerivedReport",
    "DerivedSettings",
    "EventStore",
    "RetentionReport",
    "Sourced",
    "StoreError",
    "StoreLockedError",
    "StoreSchemaError",
    "StoreSettings",
    "apply_retention",
    "latest_snapshot",
    "read_manifest",
    "refresh_derived",
    "write_snapshot",
]
