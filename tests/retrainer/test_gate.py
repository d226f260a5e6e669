"""Gate rules, the gate report, and the hash split of held-out queries."""

from __future__ import annotations

from pathlib import Path

import pytest

from retrainer.data import is_heldout, load_feedback
from retrainer.gate import CANDIDATE, PRODUCTION, decide
from retrainer.report import write_report
from services.evaluation.metrics import evaluate_runs
from services.evaluation.report import EvalReport
from services.settings import GatePolicy
from services.snapshots import Snapshot

QRELS = {f"q{i}": {"good": 2, "bad": 0} for i in range(40)}


def report(candidate_good_first: int) -> EvalReport:
    """Production always ranks 'bad' first; the candidate fixes ``candidate_good_first`` queries."""
    production = {q: {"bad": 2.0, "good": 1.0} for q in QRELS}
    candidate = {
        q: ({"good": 2.0, "bad": 1.0} if i < candidate_good_first else {"bad": 2.0, "good": 1.0})
        for i, q in enumerate(QRELS)
    }
    return evaluate_runs(QRELS, {PRODUCTION: production, CANDIDATE: candidate}, baseline=PRODUCTION)


def test_a_significant_gain_without_guard_drop_passes() -> None:
    decision = decide(report(30), report(0), GatePolicy(), production="v1", candidate="v2")
    assert decision.passed, decision.reasons
    assert decision.gain > 0.2 and decision.p_value < 0.05
    assert (
        decision.heldout_metrics[CANDIDATE]["mrr@10"]
        > decision.heldout_metrics[PRODUCTION]["mrr@10"]
    )
    assert decision.guard_drop == 0


def test_each_failed_rule_is_a_reason() -> None:
    policy = GatePolicy(min_gain=0.5, max_p_value=0.01, min_heldout_queries=100, max_guard_drop=0.0)
    guard_regresses = evaluate_runs(
        QRELS,
        {
            PRODUCTION: {q: {"good": 2.0, "bad": 1.0} for q in QRELS},
            CANDIDATE: {q: {"bad": 2.0, "good": 1.0} for q in QRELS},
        },
        baseline=PRODUCTION,
    )
    decision = decide(report(2), guard_regresses, policy, production="v1", candidate="v2")
    assert not decision.passed
    text = " | ".join(decision.reasons)
    for fragment in ("held-out queries", "gain", "p-value", "guard nDCG@10 drops"):
        assert fragment in text


def test_no_heldout_queries_is_a_rejection() -> None:
    decision = decide(None, None, GatePolicy(), production="v1", candidate="v2")
    assert not decision.passed and "only 0 held-out queries" in decision.reasons[0]


def test_report_has_markdown_html_and_plot(tmp_path: Path) -> None:
    decision = decide(report(30), report(0), GatePolicy(), production="v1", candidate="v2")
    html = write_report(decision, tmp_path)
    assert html.read_text().startswith("<!doctype html>")
    assert "data:image/png;base64," in html.read_text()
    markdown = (tmp_path / "gate-v2.md").read_text()
    assert "passed" in markdown and "held-out mrr@10" in markdown
    assert (tmp_path / "gate-v2.png").read_bytes()[:4] == b"\x89PNG"


def test_heldout_split_is_stable_and_about_the_fraction() -> None:
    queries = [f"query number {i}" for i in range(4000)]
    held = [q for q in queries if is_heldout(q, 0.2)]
    assert 0.17 < len(held) / len(queries) < 0.23
    assert held == [q for q in queries if is_heldout(q, 0.2)]
    assert set(held) <= {q for q in queries if is_heldout(q, 0.3)}


def test_feedback_never_trains_on_heldout_queries(tmp_path: Path) -> None:
    from feedback_ingest.store import EventStore, write_snapshot
    from tests.feedback_ingest.builders import act, query

    texts = {f"p{i}": f"product {i}" for i in range(6)}
    events, actions = [], []
    for n in range(60):
        qid = f"q{n}"
        events.append(query(qid, f"search {n}", ["p0", "p1", "p2"]))
        actions.append(act(qid, "click", "p1", 2))
    with EventStore(tmp_path / "events.duckdb") as store:
        store.write_batch(events, actions)
        snapshot = write_snapshot(store, tmp_path / "exports")
    data = load_feedback(Snapshot(snapshot), texts, heldout_fraction=0.3)
    trained = {e.query for e in data.examples}
    held = set(data.heldout_queries.values())
    assert trained and held and not trained & held
    assert all(is_heldout(q, 0.3) for q in held)
    assert all(e.positive == "product 1" and e.negative == "product 0" for e in data.examples)
    assert all(rels == {"p0": 0, "p1": 1} for rels in data.heldout_qrels.values())
    assert data.new_pairs == len(data.examples)


@pytest.mark.parametrize("fraction", [0.0001, 0.9999])
def test_extreme_fractions(fraction: float) -> None:
    share = sum(is_heldout(f"q{i}", fraction) for i in range(1000)) / 1000
    assert abs(share - fraction) < 0.01
