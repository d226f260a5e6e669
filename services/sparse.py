"""The sparse vector type shared by encoders and index backends."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True, slots=True)
class SparseVec:
    """A sparse vector over a vocabulary: sorted term ids and their positive weights."""

    indices: npt.NDArray[np.int32]
    values: npt.NDArray[np.float32]

    @classmethod
    def from_dense(cls, dense: npt.NDArray[np.floating], threshold: float = 0.0) -> SparseVec:
        """Keep the entries of a dense row strictly above ``threshold``."""
        (idx,) = np.nonzero(dense > threshold)
        return cls(idx.astype(np.int32), dense[idx].astype(np.float32))

    @classmethod
    def from_lists(cls, indices: list[int], values: list[float]) -> SparseVec:
        """Build from plain lists, sorting by term id."""
        idx = np.asarray(indices, dtype=np.int32)
        order = np.argsort(idx, kind="stable")
        return cls(idx[order], np.asarray(values, dtype=np.float32)[order])

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def dot(self, other: SparseVec) -> float:
        """Inner product (the SPLADE relevance score)."""
        common, a, b = np.intersect1d(
            self.indices, other.indices, assume_unique=True, return_indices=True
        )
        if common.size == 0:
            return 0.0
        return float(np.dot(self.values[a], other.values[b]))
