"""Settings of the event store, the derived tables and the snapshots.

Part of the one settings tree: ``Settings.ingest.store`` (``FLYWHEEL_INGEST__STORE__...``), e.g.
``FLYWHEEL_INGEST__STORE__RETENTION_DAYS=30``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field


class ClickModelSettings(BaseModel):
    """Position-bias estimation (position-based click model, EM)."""

    max_position: int = Field(
        default=20, ge=1, description="Propensities are estimated for positions 1..max_position."
    )
    min_observations: int = Field(
        default=2000,
        ge=1,
        description="Fewer shown (list, product) observations than this: use the fallback curve.",
    )
    min_position_observations: int = Field(
        default=30,
        ge=1,
        description="A position seen fewer times than this takes the fallback curve's value.",
    )
    fallback_eta: float = Field(
        default=1.0, ge=0, description="Fallback propensity curve: 1 / position**eta."
    )
    max_iter: int = Field(default=500, ge=1)
    tol: float = Field(default=1e-6, gt=0, description="Stop when no propensity moves more.")


class FeedbackCaps(BaseModel):
    """How much any one session or client may weigh in judgments, pairs and online metrics.

    Session and client ids are what a shopper sends; the client is the keyed hash of its
    network address that encoder_server records (``queries.client_key``), or the session
    where none was recorded. Caps bound what one actor can do by posting events; they do not
    replace the served-list binding or the gate.
    """

    max_lists_per_session: int = Field(
        default=50, ge=1, description="A session's later lists are not counted at all."
    )
    max_client_share: float = Field(
        default=0.01,
        gt=0,
        le=1,
        description="No client counts for more than this share of a comparison's lists (per "
        "version and arm, or per interleaved pair), nor of the total training weight.",
    )
    min_client_lists: int = Field(
        default=20,
        ge=1,
        description="A client may always count this many lists (and this many clipped "
        "engagements of training weight), so small shops are not capped by the share.",
    )


class DerivedSettings(BaseModel):
    """How judgments, IPS weights, training pairs and online metrics are derived."""

    click_model: ClickModelSettings = Field(default_factory=ClickModelSettings)
    ips_max_weight: float = Field(
        default=20.0, ge=1, description="Each click's 1/propensity is clipped at this value."
    )
    max_pairs_per_query: int = Field(default=50, ge=1)
    caps: FeedbackCaps = Field(default_factory=FeedbackCaps)
    attribution_window_s: float = Field(
        default=1800.0,
        gt=0,
        description="A served list's interactions count until this long after the query; "
        "online metrics include a list only once its window has closed.",
    )


ARCHIVE_FOLDER = "archive"
"""The default archive folder, inside the exports folder so snapshots can name its files."""


class StoreSettings(BaseModel):
    """The DuckDB event store, its retention and its Parquet snapshots."""

    dead_letter_raw_max_bytes: int = Field(
        default=16_384, ge=0, description="Raw payload kept per dead letter (truncated)."
    )
    keep_snapshots: int = Field(default=5, ge=1, description="Snapshots kept in exports/.")
    retention_days: int = Field(
        default=30,
        ge=0,
        description="Raw events (queries, interactions, dead letters) of days older than this "
        "many days leave the DuckDB file for the Parquet archive (hive-style day=YYYY-MM-DD "
        "folders), and online metrics cover the days kept; judgments, training pairs and the "
        "per-query counts are kept for every day. 0: keep every event in DuckDB.",
    )
    archive_dir: Path | None = Field(
        default=None,
        description="Where retention archives raw events; unset: the 'archive' folder of the "
        "exports folder, so every snapshot can include the archived days.",
    )
    derived: DerivedSettings = Field(default_factory=DerivedSettings)

    def archive_root(self, exports_dir: Path) -> Path:
        """The archive folder: :attr:`archive_dir`, else ``<exports_dir>/archive``."""
        return self.archive_dir if self.archive_dir is not None else exports_dir / ARCHIVE_FOLDER
