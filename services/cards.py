"""Typed sections of a model card that more than one app reads.

The registry stores cards as JSON; these models are the contract between the job that writes a
section and the apps that read it, so no reader parses another app's dict by key.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel


class DataWindow(BaseModel):
    """The served lists a version's feedback came from (times of the first and last)."""

    first: datetime | None = None
    last: datetime | None = None

    @classmethod
    def of(cls, training: dict[str, Any]) -> DataWindow:
        """The window recorded in a card's ``training`` section (empty when none was).

        Cards written before the window was typed hold the text ``"None"`` for a missing end.
        """
        raw = training.get("data_window") or {}
        return cls.model_validate({k: None if v == "None" else v for k, v in raw.items()})
