"""Fixtures of the event-store tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from feedback_ingest.store import EventStore
from tests.feedback_ingest.builders import open_store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EventStore]:
    yield from open_store(tmp_path / "events.duckdb")
