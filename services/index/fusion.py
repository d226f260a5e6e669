"""How hybrid mode fuses the SPLADE and BM25 candidate lists into one ranking.

Two fusion functions, both over the top ``depth`` candidates of each list (100 by default):

* ``convex`` (the default) — a convex combination of min-max normalised scores,
  ``α·norm(splade) + (1 − α)·norm(bm25)``, each list normalised over its own candidates (best
  1, worst 0; a product absent from a list gets 0 from it). Bruch, Gai & Ingber (2023), "An
  Analysis of Fusion Functions for Hybrid Retrieval" (ACM TOIS 42(1)), find it better than RRF
  and tunable from few queries: unlike ranks, scores say *how much* better a candidate is.
  Computed here from the two lists, the same for both backends.
* ``rrf`` — reciprocal-rank fusion in the engine, ``Σ 1 / (k + rankᵢ)`` (Cormack, Clarke &
  Büttcher, 2009, "Reciprocal Rank Fusion outperforms Condorcet and individual rank learning
  methods").

Measured on Home Depot (README, "Default search mode"): RRF k = 60 puts the bundled model's
hybrid 5% *below* BM25; the convex combination at α = 0.4 puts it above BM25, and the catalog-
adapted model's hybrid 4.6% above. With BM25 weighing 0.6, a model that forgot shows less in
hybrid lists, so the gate's guards measure the model alone (``retrain.guard_mode``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from services.index.base import DEFAULT_RRF_K, VectorName

FusionMethod = Literal["convex", "rrf"]

DEFAULT_SPLADE_WEIGHT = 0.4
"""α of the convex combination: chosen on 2,000 Home Depot queries kept apart from the
evaluation protocol's (README, "Default search mode")."""
DEFAULT_DEPTH = 100
"""Candidates taken from each list. Deeper lists leave fewer candidates absent from the other
list (scored 0 there): on the held-apart Home Depot queries nDCG@10 rose from depth 100 to 400
for both the bundled and the adapted model, but over HTTP depth 400 halved the queries served
per second (README, "Default search mode"), so the default stays 100."""


@dataclass(frozen=True, slots=True)
class Fusion:
    """A fusion function and its constants (``settings.search.hybrid_fusion()``)."""

    method: FusionMethod = "convex"
    splade_weight: float = DEFAULT_SPLADE_WEIGHT
    """α: the SPLADE list's share of a convex combination (BM25 gets 1 − α)."""
    rrf_k: int = DEFAULT_RRF_K
    """RRF's constant k."""
    depth: int = DEFAULT_DEPTH
    """Candidates from each list (at least the page's end: ``limit + offset``)."""

    def __post_init__(self) -> None:
        if self.method not in ("convex", "rrf"):
            raise ValueError(f"unknown fusion {self.method!r}; use 'convex' or 'rrf'")
        if not 0.0 <= self.splade_weight <= 1.0:
            raise ValueError(f"splade_weight must be in [0, 1]; got {self.splade_weight}")
        if self.rrf_k < 1:
            raise ValueError(f"rrf_k must be >= 1; got {self.rrf_k}")
        if self.depth < 1:
            raise ValueError(f"depth must be >= 1; got {self.depth}")

    def describe(self) -> str:
        """A few words for reports: ``convex α=0.4`` or ``RRF k=60`` (and ``, top 400`` when
        the depth is not the default)."""
        depth = f", top {self.depth}" if self.depth != DEFAULT_DEPTH else ""
        if self.method == "rrf":
            return f"RRF k={self.rrf_k}{depth}"
        return f"convex α={self.splade_weight:g}{depth}"

    def weight(self, name: VectorName) -> float:
        """The convex weight of list ``name``."""
        return self.splade_weight if name == "splade" else 1.0 - self.splade_weight


DEFAULT_FUSION = Fusion()


Scored = tuple[str, float]
"""A candidate's id (a point id: payloads are fetched for the page only) and its score."""


def min_max(scored: Sequence[Scored]) -> dict[str, float]:
    """Each candidate's score scaled to [0, 1] over ``scored`` (all 1.0 when the scores are
    equal); a candidate listed twice keeps its first (best) score."""
    if not scored:
        return {}
    low = min(score for _, score in scored)
    span = max(score for _, score in scored) - low
    scaled: dict[str, float] = {}
    for key, score in scored:
        scaled.setdefault(key, (score - low) / span if span > 0 else 1.0)
    return scaled


def convex(lists: Mapping[VectorName, Sequence[Scored]], fusion: Fusion) -> dict[str, float]:
    """The convex combination of min-max normalised lists: each candidate's fused score
    (the caller orders them and breaks ties)."""
    scores: dict[str, float] = {}
    for name, scored in lists.items():
        weight = fusion.weight(name)
        for key, value in min_max(scored).items():
            scores[key] = scores.get(key, 0.0) + weight * value
    return scores
