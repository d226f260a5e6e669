"""The canary controller on simulated online traffic: a better canary is promoted, a worse one
rolled back, too little traffic waits; decisions show in metrics and the decision log."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from feedback_ingest.store import EventStore, write_snapshot
from retrainer.canary import ArmStats, decisions, judge, run_controller
from services.events import InteractionEvent, QueryEvent
from services.registry import ModelCard, ModelRegistry
from services.settings import CanaryPolicy, Settings
from tests.feedback_ingest.builders import at


def home_with_canary(tmp_path: Path) -> Settings:
    settings = Settings(home=tmp_path)
    registry = ModelRegistry(settings.registry_dir)
    for _ in range(2):
        with registry.stage() as staged:
            (staged / "model.safetensors").write_bytes(b"w")
            registry.publish(
                staged,
                ModelCard(
                    version=registry.next_version(),
                    source="test",
                    max_query_tokens=32,
                    max_doc_tokens=64,
                ),
            )
    registry.set_production("v1")
    registry.set_canary("v2", 0.2)
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
    with EventStore(settings.home / "events.duckdb") as store:
        store.write_batch(queries, actions)
        write_snapshot(store, settings.home / "exports")


def count(decision: str) -> float:
    return (
        REGISTRY.get_sample_value("flywheel_canary_decisions_total", {"decision": decision}) or 0.0
    )


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
    traffic(settings, {"production": 0.1, "canary": 0.9}, lists=50, seed=3)
    decision = run_controller(settings)
    assert decision.decision == "wait" and "need 200 per arm" in decision.reason
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
def test_judge_rules(canary_mean: float, require_better: bool, expected: str) -> None:
    production = ArmStats(version="v1", lists=10_000, mean=0.5, variance=0.01, ctr_at_10=0.5)
    canary = ArmStats(version="v2", lists=10_000, mean=canary_mean, variance=0.01, ctr_at_10=0.5)
    policy = CanaryPolicy(margin=0.01, require_better=require_better)
    assert judge(production, canary, policy)[0] == expected


@pytest.mark.parametrize(
    ("wins", "losses", "expected"),
    [(300, 200, "promote"), (250, 250, "promote"), (180, 320, "rollback"), (30, 10, "wait")],
)
def test_judge_interleaving(wins: int, losses: int, expected: str) -> None:
    from retrainer.canary import judge_interleaving

    policy = CanaryPolicy(margin=0.05)
    assert judge_interleaving(wins, losses, policy)[0] == expected


def test_an_undecided_canary_is_rolled_back_after_max_lists(tmp_path: Path) -> None:
    settings = home_with_canary(tmp_path)
    settings.retrain.canary.min_lists_per_arm = 20
    settings.retrain.canary.max_lists_per_arm = 60
    # The same click rate on both arms and few lists: the bound straddles the margin.
    traffic(settings, {"production": 0.5, "canary": 0.5}, lists=40, seed=5)
    first = run_controller(settings)
    assert first.decision == "wait" and "undecided" in first.reason
    traffic(settings, {"production": 0.5, "canary": 0.5}, lists=40, seed=6)
    second = run_controller(settings)
    assert second.decision == "rollback" and "inconclusive after" in second.reason
    assert ModelRegistry(settings.registry_dir).pointers().canary is None
