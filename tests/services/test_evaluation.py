"""Offline evaluation: ranx figures against hand-computed ones, significance, reports, systems."""

from __future__ import annotations

import csv
import json
import math
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from services.datasets.base import LabelledSet
from services.datasets.homedepot import grade
from services.errors import ConfigError
from services.evaluation.metrics import comparable_run, evaluate_runs
from services.evaluation.protocol import evaluate_dataset, parse_systems, resolve_version
from services.evaluation.report import EvalReport
from services.evaluation.systems import bm25s_run, hits_to_run
from services.index.base import Hit
from services.products import Product
from services.pvalues import p_text
from services.registry import ModelRegistry
from services.settings import Settings
from tests.conftest import IndexedHome


def dcg(gains: list[float], k: int = 10) -> float:
    """Järvelin & Kekäläinen (2002) with linear gain: sum of g_i / log2(i + 1), i from 1."""
    return sum(g / math.log2(i + 2) for i, g in enumerate(gains[:k]))


def ndcg(ranked: list[str], judged: dict[str, int], k: int = 10) -> float:
    ideal = dcg(sorted(judged.values(), reverse=True), k)
    return dcg([judged.get(d, 0) for d in ranked], k) / ideal if ideal else 0.0


def as_run(ranking: dict[str, list[str]]) -> dict[str, dict[str, float]]:
    """Ranked lists -> scores that keep the order (first = highest)."""
    return {q: {d: float(len(docs) - i) for i, d in enumerate(docs)} for q, docs in ranking.items()}


QRELS = {"q1": {"a": 3, "b": 0, "c": 1, "d": 2}, "q2": {"e": 2, "f": 6}}
RANKING = {"q1": ["a", "b", "d", "x"], "q2": ["x", "f"]}


def test_metrics_match_hand_computed_values() -> None:
    report = evaluate_runs(QRELS, {"s": as_run(RANKING)})
    # q1: DCG = 3/1 + 0/log2 3 + 2/log2 4 = 4; IDCG = 3 + 2/log2 3 + 1/2.
    q1 = 4.0 / (3 + 2 / math.log2(3) + 0.5)
    q2 = (6 / math.log2(3)) / (6 + 2 / math.log2(3))
    assert report.per_query["s"]["q1"] == pytest.approx(q1)
    assert report.per_query["s"]["q1"] == pytest.approx(ndcg(RANKING["q1"], QRELS["q1"]))
    assert report.per_query["s"]["q2"] == pytest.approx(q2)
    assert report.mean("s", "ndcg@10") == pytest.approx((q1 + q2) / 2)
    # MRR@10: q1 first relevant at rank 1; q2 at rank 2 (x is unjudged).
    assert report.mean("s", "mrr@10") == pytest.approx((1 + 1 / 2) / 2)
    # Recall@100: grade >= 1 is relevant (b, grade 0, is not): q1 2/3 (a, d of a, c, d), q2 1/2.
    assert report.mean("s", "recall@100") == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert report.num_queries == 2
    assert report.baseline == "s"


def test_ndcg_uses_linear_gain_not_exponential() -> None:
    report = evaluate_runs({"q": {"a": 1, "b": 6}}, {"s": as_run({"q": ["a", "b"]})})
    linear = (1 + 6 / math.log2(3)) / (6 + 1 / math.log2(3))
    exponential = (1 + 63 / math.log2(3)) / (63 + 1 / math.log2(3))
    assert report.mean("s") == pytest.approx(linear)
    assert report.mean("s") != pytest.approx(exponential)


def test_home_depot_grades_are_the_gains() -> None:
    # Reference protocol: gain = round((relevance - 1) * 3): 3 -> 6, 2.67 -> 5, 2.33 -> 4, 1 -> 0.
    ratings = {"p1": 1.0, "p2": 2.33, "p3": 3.0, "p4": 2.67}
    judged = {pid: grade(r) for pid, r in ratings.items()}
    assert judged == {"p1": 0, "p2": 4, "p3": 6, "p4": 5}
    ranked = ["p1", "p2", "p3", "p4"]
    report = evaluate_runs({"q": judged}, {"s": as_run({"q": ranked})})
    expected = (4 / math.log2(3) + 6 / 2 + 5 / math.log2(5)) / (6 + 5 / math.log2(3) + 4 / 2)
    assert report.mean("s") == pytest.approx(expected)
    assert report.mean("s", "mrr@10") == pytest.approx(1 / 2)  # p1 (grade 0) is not relevant


def test_queries_without_results_count_as_zero() -> None:
    qrels = {**QRELS, "q3": {"g": 2, "h": 1}, "q4": {"i": 3}}
    run = {**as_run(RANKING), "q4": {}, "unjudged": {"z": 1.0}}  # q3 absent, q4 empty
    report = evaluate_runs(qrels, {"s": run})
    assert report.num_queries == 4
    assert report.per_query["s"]["q3"] == 0.0
    assert report.per_query["s"]["q4"] == 0.0
    assert "unjudged" not in report.per_query["s"]
    full = evaluate_runs(QRELS, {"s": as_run(RANKING)})
    assert report.mean("s") == pytest.approx(full.mean("s") * 2 / 4)
    assert report.mean("s", "recall@100") == pytest.approx(full.mean("s", "recall@100") / 2)


def test_a_system_with_no_results_at_all_scores_zero() -> None:
    report = evaluate_runs(QRELS, {"bm25": as_run(RANKING), "empty": {}}, baseline="bm25")
    assert report.means["empty"] == {"ndcg@10": 0.0, "mrr@10": 0.0, "recall@100": 0.0}
    assert set(comparable_run(QRELS, {})) == {"q1", "q2"}


def _thirty_queries() -> tuple[dict[str, dict[str, int]], dict[str, dict[str, float]]]:
    rng = random.Random(5)
    qrels = {f"q{i}": {f"rel{i}": 2, f"other{i}": 1} for i in range(30)}
    weak = {}
    for i in range(30):  # the relevant product somewhere in ranks 4..10
        docs = [f"junk{i}_{j}" for j in range(9)]
        docs.insert(rng.randint(3, 9), f"rel{i}")
        weak[f"q{i}"] = docs
    return qrels, as_run(weak)


def test_significance_flags_a_clearly_better_system_only() -> None:
    qrels, weak = _thirty_queries()
    strong = as_run({q: [f"rel{q[1:]}", f"other{q[1:]}"] for q in qrels})
    report = evaluate_runs(
        qrels, {"base": weak, "better": strong, "same": dict(weak)}, baseline="base"
    )
    assert report.num_queries == 30
    assert report.mean("better") > report.mean("base")
    assert report.significant["better"] == {"ndcg@10": True, "mrr@10": True, "recall@100": True}
    assert report.p_values["better"]["ndcg@10"] < 0.001
    assert report.significant["same"] == {"ndcg@10": False, "mrr@10": False, "recall@100": False}
    assert report.p_values["same"]["ndcg@10"] == 1.0
    assert "base" not in report.p_values


def test_unknown_baseline_and_empty_input_are_errors() -> None:
    with pytest.raises(ConfigError, match="baseline"):
        evaluate_runs(QRELS, {"s": as_run(RANKING)}, baseline="bm25")
    with pytest.raises(ConfigError):
        evaluate_runs(QRELS, {})


def test_p_text_is_the_one_p_value_format() -> None:
    assert p_text(0.0004) == "p<0.001"
    assert p_text(0.001) == "p=0.001"
    assert p_text(0.01234) == "p=0.012"
    assert p_text(None) == ""


def test_report_markdown_and_json(tmp_path: Path) -> None:
    qrels, weak = _thirty_queries()
    strong = as_run({q: [f"rel{q[1:]}"] for q in qrels})
    report = evaluate_runs(
        qrels, {"bm25": weak, "splade": strong}, baseline="bm25", dataset="tiny/set"
    )
    markdown = report.to_markdown()
    assert "| system | nDCG@10 | MRR@10 | Recall@100 |" in markdown
    assert "| bm25 (baseline) |" in markdown
    splade_row = next(line for line in markdown.splitlines() if line.startswith("| splade"))
    assert "†" in splade_row and "p<0.001" in splade_row
    json_path, md_path = report.write(tmp_path / "reports")
    assert json_path.suffix == ".json" and md_path.suffix == ".md"
    assert "/" not in json_path.name.removeprefix("eval-")
    assert md_path.read_text("utf-8") == markdown
    loaded = EvalReport.model_validate_json(json_path.read_text("utf-8"))
    assert loaded == report
    data = json.loads(json_path.read_text("utf-8"))
    assert set(data["per_query"]["splade"]) == set(qrels)
    assert data["significant"]["splade"]["ndcg@10"] is True


def test_hits_to_run_keeps_the_first_score_of_a_product() -> None:
    hits = [[Hit("a", 3.0, {}), Hit("b", 2.0, {}), Hit("a", 1.0, {})], []]
    assert hits_to_run(["q1", "q2"], hits) == {"q1": {"a": 3.0, "b": 2.0}, "q2": {}}


def test_parse_systems() -> None:
    assert parse_systems(" BM25, splade,bm25 ") == ["bm25", "splade"]
    with pytest.raises(ConfigError, match="bm25s"):
        parse_systems("bm25,dense")
    with pytest.raises(ConfigError):
        parse_systems(" , ")


# --- systems and the protocol on a tiny labelled set ----------------------------------------

TITLES = {
    "p1": "DEWALT 20-volt cordless drill",
    "p2": "Milwaukee cordless impact driver",
    "p3": "Ryobi corded hammer drill",
    "p4": "Hampton Bay ceiling fan with light",
    "p5": "Westinghouse outdoor ceiling fan",
    "p6": "BEHR premium deck stain",
    "p7": "Rust-Oleum deck restore paint",
    "p8": "Simpson Strong-Tie angle bracket",
    "p9": "Everbilt zinc corner brace",
    "p10": "Vigoro garden soil",
}
QUERIES = {
    "cordless drill": {"p1": 6, "p2": 3, "p3": 2},
    "ceiling fan": {"p4": 6, "p5": 5, "p10": 0},
    "deck stain": {"p6": 6, "p7": 4},
    "angle bracket": {"p8": 6, "p9": 3},
    "zzz qqq": {"p1": 2, "p2": 1},  # matches nothing: must count as 0
}


def tiny_set() -> LabelledSet:
    products = [Product(pid, title, {"title": title}) for pid, title in TITLES.items()]
    queries = {f"q{i}": text for i, text in enumerate(QUERIES)}
    qrels = {f"q{i}": dict(judged) for i, judged in enumerate(QUERIES.values())}
    return LabelledSet("tiny", products, queries, qrels, max_grade=6)


def test_bm25s_run_ranks_matching_titles_first() -> None:
    pytest.importorskip("Stemmer", reason="bm25s needs PyStemmer for the English stemmer")
    ds = tiny_set()
    run = bm25s_run(ds, list(ds.queries))
    assert next(iter(sorted(run["q2"], key=run["q2"].__getitem__, reverse=True))) == "p6"
    assert set(run["q1"]) == {"p4", "p5"}  # score-0 results are left out
    assert run["q4"] == {}


def test_evaluate_dataset_bm25_needs_no_model(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    calls: dict[str, int] = {}

    def progress(stage: str, n: int, total: int) -> None:
        calls[stage] = calls.get(stage, 0) + n
        assert calls[stage] <= total

    report = evaluate_dataset(settings, tiny_set(), ["bm25"], queries=5, progress=progress)
    assert calls == {"index": len(TITLES), "bm25": 5}
    assert report.systems == ["bm25"] and report.num_queries == 5
    assert report.per_query["bm25"]["q4"] == 0.0
    assert report.per_query["bm25"]["q2"] == pytest.approx(1.0)  # deck stain: p6 then p7
    assert 0.5 < report.mean("bm25") < 0.8
    assert not ModelRegistry(settings.registry_dir).versions()  # nothing registered
    assert not settings.index_dir.exists()  # scratch index only


def test_evaluate_dataset_splade_reuses_the_registered_model(indexed_home: IndexedHome) -> None:
    settings = indexed_home.settings
    registry = ModelRegistry(settings.registry_dir)
    before = registry.versions()
    assert resolve_version(registry, "bundled", settings.encoder) == indexed_home.version
    report = evaluate_dataset(settings, tiny_set(), ["bm25", "splade"], queries=5)
    assert registry.versions() == before
    assert report.baseline == "bm25" and set(report.p_values) == {"splade"}
    assert report.protocol["model"] == f"{indexed_home.version} (bundled)"
    assert report.per_query["splade"]["q4"] <= report.mean("splade")
    assert report.mean("splade") > 0.3


def adopt_scratch_index(settings: Settings, version: str) -> None:
    """Make the evaluation's scratch index (built unrecorded) the complete index of
    ``version`` in ``settings``' home, as `flywheel index` would have recorded it."""
    from services.index.base import IndexStamp
    from services.index.edge import EdgeIndex

    registry = ModelRegistry(settings.registry_dir)
    with EdgeIndex.open(settings.index_dir / version, version) as index:
        points = index.count()
        index.write_stamp(
            IndexStamp(
                version=version,
                registry_id=registry.registry_id(),
                model_hash=registry.card(version).model_hash(),
                points=points,
            )
        )
    registry.record_index(version, points)


def test_hybrid_is_what_get_search_serves(indexed_home: IndexedHome, tmp_path: Path) -> None:
    """`hybrid` fuses with settings.search's fusion: on the same index its figures are those
    of GET /search?mode=hybrid. (Two builds of one catalog may order equal BM25
    scores differently, and RRF inherits that, so the server here serves the evaluation's own
    scratch index.)"""
    import shutil

    from fastapi.testclient import TestClient

    from encoder_server.app import create_app
    from services.events import MemorySink
    from services.synthetic import generate_labelled_set

    settings = indexed_home.settings.model_copy(deep=True)
    # not the default: the evaluation must take the setting
    settings.search.fusion, settings.search.splade_weight = "convex", 0.7
    labelled = generate_labelled_set(indexed_home.products[:200])
    work = tmp_path / "work"
    report = evaluate_dataset(
        settings,
        labelled,
        ["bm25", "splade", "hybrid"],
        queries=30,
        model=indexed_home.version,
        work_dir=work,
    )
    assert report.systems == ["bm25", "splade", "hybrid"]
    assert set(report.p_values) == {"splade", "hybrid"}
    assert report.protocol["fusion"] == "convex α=0.7"
    qids = list(report.per_query["hybrid"])
    assert len(qids) == 30
    served_settings = settings.model_copy(deep=True)
    served_settings.home = work
    shutil.copytree(settings.registry_dir, served_settings.registry_dir)
    adopt_scratch_index(served_settings, indexed_home.version)
    with TestClient(create_app(served_settings, sink=MemorySink())) as client:
        served = {}
        for qid in qids:
            response = client.get(
                "/search", params={"q": labelled.queries[qid], "k": 100, "mode": "hybrid"}
            )
            assert response.status_code == 200, response.text
            results = response.json()["results"]
            served[qid] = {r["id"]: float(len(results) - i) for i, r in enumerate(results)}
    api = evaluate_runs({q: labelled.qrels[q] for q in qids}, {"hybrid": served})
    assert api.per_query["hybrid"] == pytest.approx(report.per_query["hybrid"])
    assert api.mean("hybrid", "recall@100") == pytest.approx(report.mean("hybrid", "recall@100"))
    assert report.per_query["hybrid"] != report.per_query["splade"]


def test_queries_is_a_maximum(tmp_path: Path) -> None:
    report = evaluate_dataset(Settings(home=tmp_path / "home"), tiny_set(), ["bm25"], queries=500)
    assert report.num_queries == report.protocol["queries"] == len(tiny_set().queries)


# --- the command ----------------------------------------------------------------------------


def write_homedepot_csv(path: Path) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "product_uid", "product_title", "search_term", "relevance"])
        row = 0
        for text, judged in QUERIES.items():
            for pid, g in judged.items():
                row += 1
                writer.writerow([row, pid, TITLES[pid], text, 1 + g / 3])
        for pid in ("p3", "p9"):  # products judged only once still belong to the corpus
            row += 1
            writer.writerow([row, pid, TITLES[pid], "filler", 2])
    return path


def test_eval_command_writes_reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flywheel_cli.main import app

    monkeypatch.setenv("FLYWHEEL_HOME", str(tmp_path / "home"))
    spec = f"homedepot:{write_homedepot_csv(tmp_path / 'train.csv')}"
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["eval", "--dataset", spec, "--systems", "bm25", "--queries", "5", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "nDCG@10" in result.output and "bm25 (baseline)" in result.output
    assert len(list(out.glob("*.json"))) == 1 and len(list(out.glob("*.md"))) == 1
    bad = CliRunner().invoke(app, ["eval", "--dataset", spec, "--systems", "bm25,dense"])
    assert bad.exit_code == 2 and "unknown systems" in bad.output
    missing = CliRunner().invoke(app, ["eval", "--dataset", f"homedepot:{tmp_path / 'none.csv'}"])
    assert missing.exit_code == 2 and "does not exist" in " ".join(missing.output.split())


def test_ties_are_broken_by_product_id() -> None:
    qrels = {"q": {"b": 2}}
    one = evaluate_runs(qrels, {"s": {"q": {"b": 1.0, "a": 1.0, "c": 1.0}}})
    other = evaluate_runs(qrels, {"s": {"q": {"c": 1.0, "a": 1.0, "b": 1.0}}})
    assert one.mean("s") == other.mean("s") == pytest.approx(1 / math.log2(3))
    assert comparable_run(qrels, {"q": {"b": 1.0, "a": 1.0, "z": 5.0}}) == {
        "q": {"z": 3.0, "a": 2.0, "b": 1.0}
    }
