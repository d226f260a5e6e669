"""What every SPLADE encoder offers, and the batching both runtimes share."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

from services.sparse import SparseVec

ProgressFn = Callable[[int], None]
"""Called with the number of texts just encoded (drives progress bars)."""


class SpladeEncoder(Protocol):
    """Turns text into SPLADE sparse vectors over the model's vocabulary (Formal et al., 2021,
    "SPLADE: Sparse Lexical and Expansion Model for First Stage Ranking")."""

    def encode_query(self, text: str) -> SparseVec:
        """One query, truncated to the query token limit."""

    def encode_documents(
        self, texts: Sequence[str], *, batch_size: int = 64, progress: ProgressFn | None = None
    ) -> list[SparseVec]:
        """Many documents, in the input order."""


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> Iterator[list[int]]:
    """Yield index batches of texts with similar lengths, longest first.

    Sorting by length keeps padding (and so wasted MLM-head work) small; the caller writes each
    result back to its original index.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]
