"""The canary controller on simulated online traffic: a better canary is promoted, a worse one
rolled back, too little traffic waits; decisions show in metrics and the decision log; the
judges' rules, sequential and fixed; compare-and-swap on the versions judged."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from feedback_ingest.store import EventStore, write_snapshot
from retrainer.canary import decisions, judge_ab, judge_interleaving, run_controller
from services.decisions import ArmStats, InterleavingStats
from services.events import InteractionEvent, QueryEvent
from services.metrics import registry_for
from services.registry import ModelRegistry
from services.settings import CanaryPolicy, Settings
from tests.feedback_ingest.builders import at
from tests.services.test_registry import publish_dummy


def home_with_canary(tmp_path: Path) -> Settings:
    settings = Settings(home=tmp_path)
    registry = ModelRegistry(settings.registry_dir)
    for _ in range(2):
        publish_dummy(registry)
    registry.set_production("v1")
    registry.set_canary("v2", 0.2)
    # These tests serve each arm its own list: judge on A/B (interleaving is tested below).
    settings.retrain.canary.judge = "ab"
    return settings


def traffic(settings: Settings, click_rate: dict[str, float], lists: int, seed: int) -> None:
    """``lists`` served lists per arm; the clicked position is 1 with probability click_rate."""
    rng = random.Random(seed)
    queries, actions = [], []
    for arm, version in (("production", "v1"), ("canary", "v2")):
        for n in range(lists):
            qid = f"{arm}-{seed}-{n}"
            queries.append(
                QueryEvent(
                    query_id=qid,
                    timestamp=at(n),
                    user_query="drill",
                    model_version=version,
                    arm=arm,
                    results=[f"p{i}" for i in range(10)],
                )
            )
            position = 1 if rng.random() < click_rate[arm] else rng.randint(4, 10)
            actions.append(
                InteractionEvent(
                    event_id=f"e-{qid}",
                    query_id=qid,
                    action_name="click",
                    object_id=f"p{position - 1}",
                    position=position,
                    timestamp=at(n),
                )
            )
    with EventStore(settings.store_path) as store:
        store.write_batch(queries, actions)
        write_snapshot(store, settings.exports_dir)


def count(decision: str) -> float:
    sample = registry_for("canary").get_sample_value(
        "flywheel_canary_decisions_total", {"decision": decision}
    )
    return sample or 0.0


def test_a_better_canary_is_promoted(tmp_path: Path) -> None:
    settings = home_with_canary(tmp_path)
    traffic(settings, {"production": 0.3, "canary": 0.7}, lists=300, seed=1)
    before = count("promote")
    decision = run_controller(settings)
    assert decision.decision == "promote", decision.reason
    assert decision.canary is not None and decision.production is not None
    assert decision.canary.mean > decision.production.mean
    pointers = ModelRegistry(settings.registry_dir).pointers()
    assert (pointers.production, pointers.canary) == ("v2", None)
    assert count("promote") == before + 1
    assert decisions(ModelRegistry(settings.registry_dir))[-1].decision == "promote"


def test_a_worse_canary_is_rolled_back(tmp_path: Path) -> None:
    settings = home_with_canary(tmp_path)
    traffic(settings, {"production": 0.7, "canary": 0.2}, lists=300, seed=2)
    before = count("rollback")
    decision = run_controller(settings)
    assert decision.decision == "rollback", decision.reason
    pointers = ModelRegistry(settings.registry_dir).pointers()
    assert (pointers.production, pointers.canary) == ("v1", None)
    assert count("rollback") == before + 1
    events = ModelRegistry(settings.registry_dir).events()
    assert events[-1]["actor"] == "canary-controller"


def test_too_little_traffic_waits(tmp_path: Path) -> None:
    settings = home_with_canary(tmp_path)
    settings.retrain.canary.min_lists_per_arm = 200
    traffic(settings, {"production": 0.1, "canary": 0.9}, lists=50, seed=3)
    decision = run_controller(settings)
    assert decision.decision == "wait" and "need 200 per arm" in decision.reason
    assert ModelRegistry(settings.registry_dir).pointers().canary == "v2"


def test_too_little_traffic_waits_default_minimum(tmp_path: Path) -> None:
    settings = home_with_canary(tmp_path)
    traffic(settings, {"production": 0.1, "canary": 0.9}, lists=30, seed=3)
    decision = run_controller(settings)
    assert decision.decision == "wait" and "need 50 per arm" in decision.reason
    assert ModelRegistry(settings.registry_dir).pointers().canary == "v2"


@pytest.mark.parametrize(
    ("canary_mean", "require_better", "expected"),
    [
        (0.50, False, "promote"),
        (0.498, False, "promote"),  # within the margin and not significantly worse
        (0.498, True, "wait"),
        (0.495, False, "rollback"),  # within the margin, but significantly worse: roll back
        (0.46, False, "rollback"),
        (0.55, True, "promote"),
    ],
)
def test_fixed_ab_rules(canary_mean: float, require_better: bool, expected: str) -> None:
    production = ArmStats(version="v1", lists=10_000, mean=0.5, variance=0.01, ctr_at_10=0.5)
    canary = ArmStats(version="v2", lists=10_000, mean=canary_mean, variance=0.01, ctr_at_10=0.5)
    policy = CanaryPolicy(test="fixed", margin=0.01, require_better=require_better)
    assert judge_ab(production, canary, policy).decision == expected


@pytest.mark.parametrize(
    ("canary_mean", "expected"),
    [(0.50, "wait"), (0.498, "wait"), (0.515, "promote"), (0.485, "rollback")],
)
def test_sequential_ab_promotes_only_a_better_canary(canary_mean: float, expected: str) -> None:
    production = ArmStats(version="v1", lists=10_000, mean=0.5, variance=0.01, ctr_at_10=0.5)
    canary = ArmStats(version="v2", lists=10_000, mean=canary_mean, variance=0.01, ctr_at_10=0.5)
    judged = judge_ab(production, canary, CanaryPolicy())
    assert judged.decision == expected, judged.reason
    assert judged.p_value is not None and "always-valid" in judged.reason


@pytest.mark.parametrize(
    ("wins", "losses", "test", "expected"),
    [
        (300, 200, "fixed", "promote"),
        (180, 320, "fixed", "rollback"),
        (30, 10, "fixed", "wait"),
        (300, 200, "sequential", "promote"),
        (250, 250, "sequential", "wait"),  # equal: never a promotion
        (180, 320, "sequential", "rollback"),
        (36, 19, "fixed", "promote"),
        (36, 19, "sequential", "wait"),  # one look of many: the z-test has not earned it
    ],
)
def test_judge_interleaving(wins: int, losses: int, test: str, expected: str) -> None:
    policy = CanaryPolicy.model_validate({"test": test, "margin": 0.05})
    stats = InterleavingStats(lists=2 * (wins + losses), wins=wins, losses=losses, ties=0)
    assert judge_interleaving(stats, policy).decision == expected


def interleaved_traffic(settings: Settings, win_rate: float, lists: int, seed: int) -> None:
    """Interleaved v2 (team A) against v1: a click on the canary's result with ``win_rate``."""
    rng = random.Random(seed)
    queries, actions = [], []
    for n in range(lists):
        qid = f"i-{seed}-{n}"
        teams = ["v2", "v1"] * 5
        queries.append(
            QueryEvent(
                query_id=qid,
                timestamp=at(n / 10),
                user_query="drill",
                session_id=f"s-{qid}",
                model_version="v2",
                arm="interleaved",
                results=[f"p{i}" for i in range(10)],
                teams=teams,
                control_version="v1",
            )
        )
        position = 1 if rng.random() < win_rate else 2  # p0 is the canary's, p1 production's
        actions.append(
            InteractionEvent(
                event_id=f"e-{qid}",
                query_id=qid,
                action_name="click",
                object_id=f"p{position - 1}",
                position=position,
                timestamp=at(n / 10),
            )
        )
    with EventStore(settings.store_path) as store:
        store.write_batch(queries, actions)
        write_snapshot(store, settings.exports_dir)


def test_interleaving_is_the_default_judge(tmp_path: Path) -> None:
    settings = home_with_canary(tmp_path)
    settings.retrain.canary.judge = CanaryPolicy().judge
    assert settings.retrain.canary.judge == "interleaving"
    interleaved_traffic(settings, win_rate=0.7, lists=300, seed=7)
    decision = run_controller(settings)
    assert decision.decision == "promote", decision.reason
    assert decision.signal == "interleaving" and decision.test == "sequential"
    assert decision.interleaving is not None and decision.interleaving.wins > 180
    assert (decision.production_version, decision.canary_version) == ("v1", "v2")
    assert ModelRegistry(settings.registry_dir).pointers().production == "v2"


def test_a_decision_applies_only_to_the_versions_judged(tmp_path: Path) -> None:
    settings = home_with_canary(tmp_path)
    traffic(settings, {"production": 0.3, "canary": 0.7}, lists=300, seed=1)
    judged = run_controller(settings, apply=False)
    assert judged.decision == "promote"
    registry = ModelRegistry(settings.registry_dir)
    # An operator swaps the canary for another version while the decision is applied.
    publish_dummy(registry, b"w3")
    registry.set_canary("v3", 0.2)
    from retrainer.canary import _apply
    from services.errors import RegistryError

    with pytest.raises(RegistryError, match="decided on production v1 \\+ canary v2"):
        _apply(registry, judged)
    assert (registry.pointers().production, registry.pointers().canary) == ("v1", "v3")


def test_an_undecided_canary_is_rolled_back_after_max_lists(tmp_path: Path) -> None:
    settings = home_with_canary(tmp_path)
    settings.retrain.canary.min_lists_per_arm = 20
    settings.retrain.canary.max_lists_per_arm = 60
    settings.retrain.canary.test = "fixed"
    # The same click rate on both arms and few lists: the bound straddles the margin.
    traffic(settings, {"production": 0.5, "canary": 0.5}, lists=40, seed=5)
    first = run_controller(settings)
    assert first.decision == "wait" and "undecided" in first.reason
    traffic(settings, {"production": 0.5, "canary": 0.5}, lists=40, seed=6)
    second = run_controller(settings)
    assert second.decision == "rollback" and "inconclusive after" in second.reason
    assert ModelRegistry(settings.registry_dir).pointers().canary is None


def test_a_judge_without_evidence_does_not_wait_forever(tmp_path: Path) -> None:
    # The A/B judge, but the servers interleave: no canary-arm lists ever arrive.
    settings = home_with_canary(tmp_path)
    settings.retrain.canary.judge = "ab"
    settings.retrain.canary.max_lists_per_arm = 100
    interleaved_traffic(settings, win_rate=0.5, lists=60, seed=3)
    waiting = run_controller(settings)
    assert waiting.decision == "wait" and "the servers interleave the canary" in waiting.reason
    interleaved_traffic(settings, win_rate=0.5, lists=60, seed=4)
    stopped = run_controller(settings)
    assert stopped.decision == "rollback", stopped.reason
    assert "no evidence for the ab judge after 120 lists" in stopped.reason
    assert ModelRegistry(settings.registry_dir).pointers().canary is None
