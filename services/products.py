"""The product record every loader produces and every index stores."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Product:
    """One catalog item.

    ``text`` is what the encoders see (title, optionally with description); ``payload`` holds
    every other column (``title``, ``brand``, ``category``, ``price`` …) and is returned with
    search results and used for filtering.
    """

    id: str
    text: str
    payload: dict[str, Any] = field(default_factory=dict)
