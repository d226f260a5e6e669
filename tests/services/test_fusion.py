"""Hybrid fusion functions: the convex combination of normalised scores, and RRF's
settings (its arithmetic is the engine's, checked in test_index_edge and the congruence test)."""

from __future__ import annotations

import pytest

from services.index.fusion import DEFAULT_FUSION, Fusion, Scored, convex, normalise
from services.settings import SearchSettings

CONVEX = Fusion("convex", 0.4)


def hits(*scored: Scored) -> list[Scored]:
    return list(scored)


def test_normalise_divides_by_the_best_or_maps_worst_to_best() -> None:
    scored = hits(("a", 12.0), ("b", 8.0), ("c", 2.0))
    assert normalise(scored, "max") == pytest.approx({"a": 1.0, "b": 8 / 12, "c": 2 / 12})
    assert normalise(scored, "min_max") == {"a": 1.0, "b": 0.6, "c": 0.0}
    for how in ("max", "min_max"):
        assert normalise(hits(("a", 3.0), ("b", 3.0)), how) == {"a": 1.0, "b": 1.0}
        assert normalise(hits(("a", 5.0), ("a", 1.0), ("b", 2.5)), how)["a"] == 1.0
        assert normalise([], how) == {}
    assert normalise(hits(("a", 0.0), ("b", 0.0)), "max") == {"a": 1.0, "b": 1.0}


def test_convex_divides_by_the_best_and_absent_from_a_short_list_is_zero() -> None:
    # Both lists are shorter than the depth asked for, so each holds every match.
    splade = hits(("a", 30.0), ("b", 20.0), ("c", 10.0))
    bm25 = hits(("c", 9.0), ("d", 6.0), ("a", 3.0))
    fused = convex({"splade": splade, "bm25": bm25}, CONVEX, depth=10)
    assert fused == pytest.approx(
        {
            "a": 0.4 * 1.0 + 0.6 * (3 / 9),
            "b": 0.4 * (20 / 30),
            "c": 0.4 * (10 / 30) + 0.6 * 1.0,
            "d": 0.6 * (6 / 9),
        }
    )
    # Scale-free: multiplying one list's scores changes nothing (ranks alone would not see the
    # margins; raw scores would let the larger scale win).
    scaled = hits(*((key, score * 1000) for key, score in bm25))
    again = convex({"splade": splade, "bm25": scaled}, CONVEX, depth=10)
    assert again == pytest.approx(fused)


def test_absent_from_a_full_list_gets_its_last_candidates_share() -> None:
    # At depth 3 both lists are full: "b" may have scored just below BM25's third, 3.0, so
    # it gets 3 / 9 from BM25 (an upper bound), not 0; "d" gets SPLADE's 10 / 30.
    splade = hits(("a", 30.0), ("b", 20.0), ("c", 10.0))
    bm25 = hits(("c", 9.0), ("d", 6.0), ("a", 3.0))
    fused = convex({"splade": splade, "bm25": bm25}, CONVEX, depth=3)
    assert fused["b"] == pytest.approx(0.4 * (20 / 30) + 0.6 * (3 / 9))
    assert fused["d"] == pytest.approx(0.4 * (10 / 30) + 0.6 * (6 / 9))
    assert fused["a"] == pytest.approx(0.4 * 1.0 + 0.6 * (3 / 9))
    # The depth defaults to the fusion's own.
    assert convex({"splade": splade, "bm25": bm25}, Fusion("convex", 0.4, depth=3)) == fused


def test_min_max_keeps_the_previous_arithmetic() -> None:
    # FLYWHEEL_SEARCH__HYBRID_NORMALIZATION=min_max: each list onto [0, 1] from its worst
    # candidate, absent 0 whatever the depth.
    splade = hits(("a", 30.0), ("b", 20.0), ("c", 10.0))
    bm25 = hits(("c", 9.0), ("d", 6.0), ("a", 3.0))
    fusion = Fusion("convex", 0.4, normalization="min_max")
    for depth in (3, 10):
        fused = convex({"splade": splade, "bm25": bm25}, fusion, depth=depth)
        assert fused == pytest.approx(
            {"a": 0.4 * 1.0 + 0.6 * 0.0, "b": 0.4 * 0.5, "c": 0.6 * 1.0, "d": 0.6 * 0.5}
        )


def test_convex_weight_moves_the_ranking_between_the_lists() -> None:
    splade = hits(("a", 2.0), ("b", 1.0))
    bm25 = hits(("b", 2.0), ("a", 1.0))

    def top(weight: float) -> str:
        fused = convex({"splade": splade, "bm25": bm25}, Fusion("convex", weight))
        return max(fused, key=lambda key: fused[key])

    assert (top(0.9), top(0.1)) == ("a", "b")


def test_convex_over_one_list_weighs_it_alone() -> None:
    assert convex({"bm25": hits(("x", 1.0))}, CONVEX) == {"x": 0.6}
    assert convex({"bm25": hits(("x", 2.0), ("y", 1.0))}, CONVEX, depth=2) == {"x": 0.6, "y": 0.3}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "borda"}, "unknown fusion"),
        ({"splade_weight": 1.5}, r"splade_weight must be in \[0, 1\]"),
        ({"rrf_k": 0}, "rrf_k must be >= 1"),
        ({"depth": 0}, "depth must be >= 1"),
        ({"normalization": "z"}, "unknown normalization 'z'"),
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
    assert DEFAULT_FUSION.normalization == "max"
    old = SearchSettings(hybrid_normalization="min_max", hybrid_depth=400).hybrid_fusion()
    assert (old.normalization, old.describe()) == ("min_max", "convex α=0.4, min-max, top 400")
    with pytest.raises(ValueError, match="splade_weight"):
        SearchSettings(splade_weight=-0.1)
