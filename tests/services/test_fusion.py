"""Hybrid fusion functions: the convex combination of min-max normalised scores, and RRF's
settings (its arithmetic is the engine's, checked in test_index_edge and the congruence test)."""

from __future__ import annotations

import pytest

from services.index.fusion import DEFAULT_FUSION, Fusion, Scored, convex, min_max
from services.settings import SearchSettings

CONVEX = Fusion("convex", 0.4)


def hits(*scored: Scored) -> list[Scored]:
    return list(scored)


def test_min_max_scales_each_list_to_unit_range() -> None:
    assert min_max(hits(("a", 12.0), ("b", 8.0), ("c", 2.0))) == {"a": 1.0, "b": 0.6, "c": 0.0}
    assert min_max(hits(("a", 3.0), ("b", 3.0))) == {"a": 1.0, "b": 1.0}  # no spread: all best
    assert min_max(hits(("a", 5.0), ("a", 1.0), ("b", 3.0))) == {"a": 1.0, "b": 0.5}
    assert min_max([]) == {}


def test_convex_combines_normalised_scores_and_absent_is_zero() -> None:
    splade = hits(("a", 30.0), ("b", 20.0), ("c", 10.0))
    bm25 = hits(("c", 9.0), ("d", 6.0), ("a", 3.0))
    fused = convex({"splade": splade, "bm25": bm25}, CONVEX)
    assert fused == pytest.approx(
        {"a": 0.4 * 1.0 + 0.6 * 0.0, "b": 0.4 * 0.5, "c": 0.4 * 0.0 + 0.6 * 1.0, "d": 0.6 * 0.5}
    )
    # Scale-free: multiplying one list's scores changes nothing (ranks alone would not see the
    # margins; raw scores would let the larger scale win).
    scaled = hits(*((key, score * 1000) for key, score in bm25))
    again = convex({"splade": splade, "bm25": scaled}, CONVEX)
    assert again == pytest.approx(fused)


def test_convex_weight_moves_the_ranking_between_the_lists() -> None:
    splade = hits(("a", 2.0), ("b", 1.0))
    bm25 = hits(("b", 2.0), ("a", 1.0))

    def top(weight: float) -> str:
        fused = convex({"splade": splade, "bm25": bm25}, Fusion("convex", weight))
        return max(fused, key=lambda key: fused[key])

    assert (top(0.9), top(0.1)) == ("a", "b")


def test_convex_over_one_list_weighs_it_alone() -> None:
    assert convex({"bm25": hits(("x", 1.0))}, CONVEX) == {"x": 0.6}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "borda"}, "unknown fusion"),
        ({"splade_weight": 1.5}, r"splade_weight must be in \[0, 1\]"),
        ({"rrf_k": 0}, "rrf_k must be >= 1"),
        ({"depth": 0}, "depth must be >= 1"),
    ],
)
def test_bad_fusion_is_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Fusion(**kwargs)  # type: ignore[arg-type]


def test_settings_build_the_served_fusion() -> None:
    assert SearchSettings().hybrid_fusion() == DEFAULT_FUSION
    assert DEFAULT_FUSION.describe() == "convex α=0.4"
    rrf = SearchSettings(fusion="rrf", rrf_k=7).hybrid_fusion()
    assert (rrf.method, rrf.rrf_k, rrf.describe()) == ("rrf", 7, "RRF k=7")
    convex = SearchSettings(splade_weight=0.3).hybrid_fusion()
    assert (convex.method, convex.describe()) == ("convex", "convex α=0.3")
    deep = SearchSettings(hybrid_depth=400).hybrid_fusion()
    assert (convex.depth, deep.depth, deep.describe()) == (100, 400, "convex α=0.4, top 400")
    with pytest.raises(ValueError, match="splade_weight"):
        SearchSettings(splade_weight=-0.1)
