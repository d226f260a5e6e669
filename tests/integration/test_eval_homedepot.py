"""The full Home Depot protocol: 2,000 queries (seed 42), every one of the 54,667 titles.

Reference (shared/data/homedepot/README.md): BM25 (bm25s, English stemmer and stop words)
nDCG@10 = 0.355. The bundled 2-layer SPLADE model, off the shelf, was measured at 0.269.
Takes a few minutes on 2 cores, mostly encoding the titles with the ONNX document encoder.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from services.datasets.homedepot import load_homedepot
from services.evaluation.protocol import evaluate_dataset
from services.settings import Settings

TRAIN_CSV = (
    Path(__file__).resolve().parents[2].parent / "shared" / "data" / "homedepot" / "train.csv"
)
BM25_REFERENCE = 0.355

pytestmark = [
    pytest.mark.data,
    pytest.mark.slow,
    pytest.mark.skipif(not TRAIN_CSV.is_file(), reason=f"Home Depot data absent: {TRAIN_CSV}"),
]


def test_home_depot_protocol(
    tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    started = time.perf_counter()
    dataset = load_homedepot(TRAIN_CSV)
    assert len(dataset.products) == 54_667
    systems = ["bm25", "splade"]
    if importlib.util.find_spec("Stemmer") and importlib.util.find_spec("bm25s"):
        systems.insert(1, "bm25s")
    report = evaluate_dataset(
        Settings(home=tmp_path / "home"), dataset, systems, queries=2000, seed=42
    )
    wall = time.perf_counter() - started
    json_path, _ = report.write(tmp_path / "reports")
    print(f"\n{report.to_markdown()}\nwall time {wall:.0f} s; report {json_path}")
    record_property("wall_s", round(wall, 1))
    for system in report.systems:
        for metric, value in report.means[system].items():
            record_property(f"{system}.{metric}", round(value, 4))

    assert report.num_queries == 2000
    assert report.protocol["corpus"] == 54_667
    assert report.mean("bm25") == pytest.approx(BM25_REFERENCE, abs=0.03)
    if "bm25s" in report.systems:
        assert report.mean("bm25s") == pytest.approx(BM25_REFERENCE, abs=0.03)
    assert 0.2 < report.mean("splade") < 0.35
    assert report.mean("splade", "recall@100") > 0.4
