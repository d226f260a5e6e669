"""benchmarks/flywheel end to end on a small generated labelled set, and its split on the
Home Depot data (skipped, saying why, when the data is absent)."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from benchmarks import flywheel as fw
from services.datasets.loader import load_dataset
from services.datasets.protocol import normalise_query
from services.settings import Settings
from services.synthetic import generate_catalog, generate_labelled_set, write_qrels_dataset
from tests.conftest import HOMEDEPOT_CSV, IndexedHome

METRICS = ("ndcg@10", "mrr@10", "recall@100")


@pytest.mark.integration
@pytest.mark.slow
def test_two_rounds_on_a_generated_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = write_qrels_dataset(
        generate_labelled_set(generate_catalog(300, seed=5)), tmp_path / "data"
    )
    # Small and permissive: few triples, and a gate that lets any candidate through, so the
    # second round searches a retrained model.
    for key, value in {
        "FLYWHEEL_SIMULATOR__HOLDOUT_FRACTION": "0.3",
        "FLYWHEEL_TRAIN__BATCH_SIZE": "16",
        "FLYWHEEL_RETRAIN__MIN_NEW_PAIRS": "5",
        "FLYWHEEL_RETRAIN__GATE__MARGIN": "1",
        "FLYWHEEL_RETRAIN__GATE__MIN_HELDOUT_QUERIES": "1",
        "FLYWHEEL_ADAPT__PAIRS": "48",
        "FLYWHEEL_ADAPT__FORGETTING_PRODUCTS": "60",
    }.items():
        monkeypatch.setenv(key, value)
    out, home = tmp_path / "out", tmp_path / "home"
    code = fw.main(
        [
            f"--dataset=qrels:{dataset}",
            "--rounds=2",
            "--sessions-per-round=150",
            "--test-queries=30",
            "--train-examples=48",
            "--supervised-examples=48",
            "--serve-mode=hybrid",
            "--canary-sessions=100",
            "--canary-looks=2",
            "--adapt",
            f"--out={out}",
            f"--home={home}",
        ]
    )
    assert code == 0
    for name in ("flywheel.md", "flywheel.json", "flywheel.png", "flywheel.log"):
        assert (out / name).stat().st_size > 0, name
    assert "nDCG@10 per round" in capsys.readouterr().out

    data = json.loads((out / "flywheel.json").read_text())
    assert [r["round"] for r in data["rounds"]] == [0, 1, 2]
    # flywheel adapt ran on the catalog first; a passing adapted model is round 0's flywheel
    adapted = data["adapted"]
    assert adapted["status"] in {"production", "rejected"}
    assert adapted["version"] == "v2" and adapted["training"]["pairs"]["generated"] > 0
    assert {c["name"] for c in adapted["checks"]} >= {"guard", "forgetting"}
    systems = set(fw.SYSTEMS)
    if adapted["status"] == "production":
        assert data["rounds"][0]["production"] == "v2"
        assert "Adapted before the shoppers" in (out / "flywheel.md").read_text()
    else:
        assert data["rounds"][0]["production"] == "v1"
        systems -= {"adapted", "adapted_hybrid"}
    for result in data["rounds"]:
        assert set(result["means"]) == systems
        for system in systems:
            assert set(result["means"][system]) == set(METRICS)
            if system != "bm25":
                assert set(result["p_values_vs_bm25"][system]) == set(METRICS)
    retrain = data["rounds"][1]["retrain"]
    assert retrain["status"] in {"canary", "rejected", "skipped"}
    if retrain["status"] == "canary":  # judged online, on interleaved lists
        assert retrain["canary"]["signal"] == "interleaving"
        assert 1 <= retrain["canary"]["looks"] <= 2
    assert data["rounds"][1]["simulation"]["searches"] >= 150
    assert data["best_mode"]["mode"] in {"splade", "hybrid", "bm25"}
    assert data["leakage"] == {"supervised": 0, "adapted": 0, "simulated": 0, "pairs": 0}
    assert data["protocol"]["test_queries"] == 30

    # No test query was ever issued by a shopper or reached a training pair.
    labelled = load_dataset(f"qrels:{dataset}")
    split = fw.split_queries(
        labelled, 0.3, fw.BenchConfig(test_queries=30, rounds=2, sessions_per_round=1)
    )
    test = split.test_texts
    assert len(test) == 30
    served = {
        normalise_query(q)
        for (q,) in duckdb.connect(str(home / "events.duckdb"), read_only=True)
        .execute("SELECT DISTINCT user_query FROM queries")
        .fetchall()
    }
    assert served
    assert not served & test
    assert not served & split.heldout_texts


@pytest.mark.integration
def test_hybrid_run_is_what_search_serves(indexed_home: IndexedHome) -> None:
    from services.datasets.base import LabelledSet
    from services.encoding.versions import onnx_encoder
    from services.evaluation.systems import hybrid_run
    from services.index.bm25 import Bm25Encoder
    from services.index.store import open_index
    from services.registry import ModelRegistry

    settings, version = indexed_home.settings, indexed_home.version
    queries = {"q1": "cordless drill", "q2": "white paint roller", "q3": "zzzz qqqq"}
    labelled = LabelledSet("t", indexed_home.products, queries, {}, max_grade=2)
    encoder = onnx_encoder(ModelRegistry(settings.registry_dir), version)
    index = open_index(settings, version)
    try:
        run = hybrid_run(index, encoder, labelled, list(queries), limit=20)
        for qid, text in queries.items():
            hits = index.hybrid_search(
                encoder.encode_query(text), Bm25Encoder().encode_query(text), limit=20
            )
            served = {h.product_id: h.score for h in reversed(hits)}
            # Equal fused scores come back in no fixed order, so compare scores, and the products
            # above the lowest score (a tie at the cut may let either product in).
            assert sorted(run[qid].values()) == sorted(served.values())
            floor = min(served.values(), default=0.0)
            assert {p for p, v in run[qid].items() if v > floor} == {
                p for p, v in served.items() if v > floor
            }
    finally:
        index.close()
    assert run["q1"] and run["q2"]


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["hybrid", "splade"])
def test_shoppers_log_what_the_search_api_would(
    indexed_home: IndexedHome, tmp_path: Path, mode: fw.ServeMode
) -> None:
    import shutil

    from services.simulator.intents import IntentPool

    home = tmp_path / "home"
    shutil.copytree(indexed_home.settings.home, home)
    settings = Settings(home=home)
    pool = IntentPool(generate_labelled_set(indexed_home.products), 0.3)
    cfg = fw.BenchConfig(sessions_per_round=40, serve_mode=mode, threads=2)
    stats = fw.Shoppers(settings, pool, cfg).run_round(indexed_home.version, 1)
    assert stats.searches >= 40
    assert stats.queries <= {normalise_query(i.text) for i in pool.train}
    con = duckdb.connect(str(home / "events.duckdb"), read_only=True)
    try:
        rows = con.execute(
            "SELECT count(*), min(len(results)), max(len(results)), "
            "count(DISTINCT model_version), min(arm), min(mode), count(DISTINCT session_id) "
            "FROM queries"
        ).fetchone()
        impressions = con.execute(
            "SELECT count(*) FROM interactions WHERE action = 'impression'"
        ).fetchone()
    finally:
        con.close()
    assert rows == (stats.searches, 10, 10, 1, "production", mode, 40)
    assert impressions == (10 * stats.searches,)
    assert (home / "exports" / "latest").is_file()


@pytest.mark.integration
@pytest.mark.slow
def test_time_budget_stops_before_a_round_and_still_writes(tmp_path: Path) -> None:
    labelled = generate_labelled_set(generate_catalog(200, seed=5))
    out = tmp_path / "out"
    code = fw.main(
        [
            "--rounds=3",
            "--supervised-examples=0",
            "--test-queries=10",
            "--max-minutes=0.001",
            f"--out={out}",
        ],
        labelled=labelled,
    )
    assert code == 0
    data = json.loads((out / "flywheel.json").read_text())
    assert [r["round"] for r in data["rounds"]] == [0]
    assert "time budget" in data["stopped_early"]
    assert set(data["rounds"][0]["means"]) == {
        "bm25",
        "offshelf",
        "offshelf_hybrid",
        "flywheel",
        "flywheel_hybrid",
    }
    assert (out / "flywheel.png").is_file()


@pytest.mark.integration
@pytest.mark.slow
def test_a_rejected_candidate_is_still_measured_on_the_test_queries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in {
        "FLYWHEEL_SIMULATOR__HOLDOUT_FRACTION": "0.3",
        "FLYWHEEL_TRAIN__BATCH_SIZE": "16",
        "FLYWHEEL_RETRAIN__MIN_NEW_PAIRS": "5",
        "FLYWHEEL_RETRAIN__GATE__HELDOUT_RULE": "superiority",
        "FLYWHEEL_RETRAIN__GATE__MIN_GAIN": "1",  # nothing can gain a whole nDCG point
    }.items():
        monkeypatch.setenv(key, value)
    out = tmp_path / "out"
    code = fw.main(
        [
            "--rounds=1",
            "--sessions-per-round=100",
            "--supervised-examples=0",
            "--train-examples=32",
            "--test-queries=20",
            f"--out={out}",
        ],
        labelled=generate_labelled_set(generate_catalog(200, seed=5)),
    )
    assert code == 0
    data = json.loads((out / "flywheel.json").read_text())
    retrain = data["rounds"][1]["retrain"]
    assert retrain["status"] == "rejected"
    assert data["rounds"][1]["production"] == "v1" != retrain["candidate"]
    for mode in ("splade", "hybrid"):
        assert set(retrain["candidate_on_test"][mode]["means"]) == set(METRICS)
    assert f"{retrain['candidate']}: " in (out / "flywheel.md").read_text()


def test_cli_reports_a_missing_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = fw.main([f"--dataset=homedepot:{tmp_path / 'absent.csv'}", f"--out={tmp_path / 'out'}"])
    assert code == 2
    assert "absent.csv" in capsys.readouterr().out


@pytest.mark.data
@pytest.mark.skipif(not HOMEDEPOT_CSV.is_file(), reason=f"Home Depot data absent: {HOMEDEPOT_CSV}")
def test_home_depot_split_keeps_test_queries_out_of_training() -> None:
    labelled = load_dataset(f"homedepot:{HOMEDEPOT_CSV}")
    holdout = Settings().simulator.holdout_fraction
    split = fw.split_queries(labelled, holdout, fw.BenchConfig())
    assert len(split.test_qids) == 2000
    assert all(len(labelled.qrels[q]) >= 2 for q in split.test_qids)
    assert split.test_texts <= split.heldout_texts
    train = {normalise_query(i.text) for i in split.pool.train}
    assert not train & split.heldout_texts
    from retrainer.bootstrap import labelled_examples

    triples = labelled_examples(
        labelled, max_examples=5000, seed=42, exclude_queries=split.heldout_texts
    )
    assert len(triples) == 5000
    assert not {t.query for t in triples} & split.heldout_texts
