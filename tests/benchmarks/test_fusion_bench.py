"""benchmarks.fusion on a generated labelled catalog: two disjoint samples, every fusion
measured through the served hybrid path, and the scratch index reused on a second run."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.fusion import Results, fusions, run_fusion, samples
from services.synthetic import generate_labelled_set
from tests.conftest import IndexedHome


def test_dev_and_protocol_samples_never_share_a_query(indexed_home: IndexedHome) -> None:
    labelled = generate_labelled_set(indexed_home.products)
    sets = samples(labelled, 15, dev_seed=7)
    assert len(sets["protocol"]) == 15 and sets["dev"]
    assert not set(sets["dev"]) & set(sets["protocol"])
    assert all(len(labelled.qrels[q]) >= 2 for q in sets["dev"])


def test_fusions_at_several_depths_and_normalisations_are_named_by_them() -> None:
    one = fusions([0.4])
    assert list(one) == ["RRF k=60", "RRF k=2", "convex α=0.4"]
    assert {f.depth for f in one.values()} == {100}  # the served default
    two = fusions([0.4], depths=[100, 400])
    assert two["convex α=0.4, top 100"].depth == 100 and len(two) == 6
    assert two["RRF k=2, top 400"].rrf_k == 2
    both = fusions([0.4], normalizations=["max", "min_max"])
    assert list(both) == ["RRF k=60", "RRF k=2", "convex α=0.4", "convex α=0.4, min-max"]
    assert both["convex α=0.4, min-max"].normalization == "min_max"
    assert both["convex α=0.4"].normalization == "max"  # the served default


@pytest.mark.slow
def test_every_fusion_is_measured_on_both_samples(
    indexed_home: IndexedHome, tmp_path: Path
) -> None:
    labelled = generate_labelled_set(indexed_home.products)

    def run() -> Results:
        return run_fusion(
            indexed_home.settings,
            indexed_home.version,
            labelled,
            queries=15,
            dev_seed=7,
            weights=[0.0, 0.4],
            work=tmp_path,
        )

    results = run()
    expected = {"BM25", "SPLADE", "RRF k=60", "RRF k=2", "convex α=0", "convex α=0.4"}
    for means, p, timing in results.values():
        assert set(means) == expected
        assert all(0.0 <= v <= 1.0 for v in means.values())
        assert set(timing) == expected - {"BM25", "SPLADE"}
        assert all(0 < p50 <= p99 for p50, p99 in timing.values())
        assert p["BM25"] == 1.0
    # The index is built once: a second run reopens it and scores the same.
    again = run()
    assert again["protocol"][0] == results["protocol"][0]
