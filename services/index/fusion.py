"""How hybrid mode fuses the SPLADE and BM25 candidate lists into one ranking.

Two fusion functions, both over the top ``depth`` candidates of each list (100 by default):

* ``convex`` (the default) — a convex combination of normalised scores,
  ``α·norm(splade) + (1 − α)·norm(bm25)``. Bruch, Gai & Ingber (2023), "An Analysis of Fusion
  Functions for Hybrid Retrieval" (ACM TOIS 42(1)), find it better than RRF and tunable from
  few queries: unlike ranks, scores say *how much* better a candidate is. Each list is
  normalised over its own candidates, by one of:

  - ``max`` (the default): ``score / best``, their *theoretical* min-max (TMM), whose lower
    bound is the scores' own, 0 (a sparse dot product and BM25 are never negative);
  - ``min_max``: ``(score − worst) / (best − worst)``, where the worst is the depth-th
    candidate's score: how far down a list reaches then changes every score on it.

  A product absent from a list gets 0 from it, except under ``max`` from a full list (one
  ``depth`` long), where it scored at most the last candidate and gets that one's share.
  Computed here from the two lists, the same for both backends.
* ``rrf`` — reciprocal-rank fusion in the engine, ``Σ 1 / (k + rankᵢ)`` (Cormack, Clarke &
  Büttcher, 2009, "Reciprocal Rank Fusion outperforms Condorcet and individual rank learning
  methods").

Measured on Home Depot (README, "Default search mode"): RRF k = 60 puts the bundled model's
hybrid 5% *below* BM25; the convex combination at α = 0.4 puts it above BM25, and the catalog-
adapted model's hybrid more than 5% above. With BM25 weighing 0.6, a model that forgot shows
less in hybrid lists, so the gate's guards measure the model alone (``retrain.guard_mode``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from services.index.base import DEFAULT_RRF_K, VectorName

FusionMethod = Literal["convex", "rrf"]
Normalization = Literal["max", "min_max"]
NORMALIZATIONS: tuple[Normalization, ...] = get_args(Normalization)

DEFAULT_SPLADE_WEIGHT = 0.4
"""α of the convex combination: chosen on 2,000 Home Depot queries kept apart from the
evaluation protocol's (README, "Default search mode")."""
DEFAULT_DEPTH = 100
"""Candidates taken from each list. Under ``min_max`` nDCG@10 rose from depth 100 to 400 on
the held-apart Home Depot queries, as the worst candidate's score neared the lower bound 0;
``max`` normalisation starts from that bound and got the same at 100 (README, "Default search
mode"), and over HTTP depth 400 halved the queries served per second."""
DEFAULT_NORMALIZATION: Normalization = "max"
"""Chosen on the held-apart Home Depot queries for both the bundled and the adapted model
(README, "Default search mode")."""


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
    normalization: Normalization = DEFAULT_NORMALIZATION
    """How the convex combination scales each list (:func:`normalise`)."""

    def __post_init__(self) -> None:
        if self.method not in ("convex", "rrf"):
            raise ValueError(f"unknown fusion {self.method!r}; use 'convex' or 'rrf'")
        if not 0.0 <= self.splade_weight <= 1.0:
            raise ValueError(f"splade_weight must be in [0, 1]; got {self.splade_weight}")
        if self.rrf_k < 1:
            raise ValueError(f"rrf_k must be >= 1; got {self.rrf_k}")
        if self.depth < 1:
            raise ValueError(f"depth must be >= 1; got {self.depth}")
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(
                f"unknown normalization {self.normalization!r}; use one of {NORMALIZATIONS}"
            )

    def describe(self) -> str:
        """A few words for reports: ``convex α=0.4`` or ``RRF k=60`` (and ``, top 400`` or
        ``, min-max`` when the depth or the normalisation is not the default)."""
        depth = f", top {self.depth}" if self.depth != DEFAULT_DEPTH else ""
        if self.method == "rrf":
            return f"RRF k={self.rrf_k}{depth}"
        norm = ", min-max" if self.normalization != DEFAULT_NORMALIZATION else ""
        return f"convex α={self.splade_weight:g}{norm}{depth}"

    def weight(self, name: VectorName) -> float:
        """The convex weight of list ``name``."""
        return self.splade_weight if name == "splade" else 1.0 - self.splade_weight


DEFAULT_FUSION = Fusion()


Scored = tuple[str, float]
"""A candidate's id (a point id: payloads are fetched for the page only) and its score."""


def normalise(scored: Sequence[Scored], normalization: Normalization) -> dict[str, float]:
    """Each candidate's score scaled to at most 1 over ``scored``: divided by the best
    (``max``) or mapped onto [0, 1] from the worst to the best (``min_max``); all 1.0 when the
    scores do not spread (or the best is not positive, under ``max``). A candidate listed twice
    keeps its first (best) score."""
    if not scored:
        return {}
    best = max(score for _, score in scored)
    low = 0.0 if normalization == "max" else min(score for _, score in scored)
    span = best - low
    scaled: dict[str, float] = {}
    for key, score in scored:
        scaled.setdefault(key, (score - low) / span if span > 0 else 1.0)
    return scaled


def convex(
    lists: Mapping[VectorName, Sequence[Scored]], fusion: Fusion, depth: int | None = None
) -> dict[str, float]:
    """The convex combination of normalised lists: each candidate's fused score (the caller
    orders them and breaks ties).

    ``depth`` (by default ``fusion.depth``) is how many candidates each list was asked for. A
    candidate absent from a list gets 0 from it, except under ``max`` from a full list: there
    it may have scored just below the last candidate, so it gets the last one's share, an
    upper bound. A list shorter than ``depth`` holds every product that matched at all (the
    engine returns nothing else), so there 0 is exact.
    """
    full = fusion.depth if depth is None else depth
    scores: dict[str, float] = {}
    floors = 0.0  # what every candidate gets from the lists it is absent from, in sum
    for name, scored in lists.items():
        weight = fusion.weight(name)
        scaled = normalise(scored, fusion.normalization)
        floor = 0.0
        if fusion.normalization == "max" and len(scored) >= full:
            floor = min(scaled.values())
        for key, value in scaled.items():
            scores[key] = scores.get(key, 0.0) + weight * (value - floor)
        floors += weight * floor
    if not floors:
        return scores
    return {key: score + floors for key, score in scores.items()}
