"""The flywheel benchmark's protocol: split, models, shopper rounds, retraining and the
canary, evaluated on human labels of test queries only (the package docstring has it all)."""

from __future__ import annotations

import logging
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from services.datasets.base import LabelledSet
from services.datasets.protocol import MIN_JUDGED, normalise_query
from services.encoding.base import ProgressFn
from services.errors import FlywheelError
from services.evaluation import systems as sy
from services.evaluation.heldout import HeldOutEvaluator, HeldOutSet
from services.evaluation.metrics import DEFAULT_METRICS, Run, evaluate_runs
from services.evaluation.report import EvalReport
from services.index.base import DEFAULT_RRF_K
from services.index.fusion import DEFAULT_FUSION, Fusion, FusionMethod
from services.products import Product
from services.registry import ModelRegistry
from services.settings import Settings
from services.simulator.intents import SPLIT_SALT, IntentPool
from services.simulator.rounds import Deployment, OfflineShoppers, ServedLists
from services.snapshots import Snapshot

logger = logging.getLogger("benchmarks.flywheel")

ServeMode = Literal["splade", "hybrid"]
ALPHA = 0.01
"""Significance level of the tables (paired t-test against BM25)."""
GOAL_NDCG = 0.41
GOAL_GAIN = 0.15
REFERENCES = {
    "this protocol, measured before (2,000 Home Depot queries, seed 42, 54,667 titles)": {
        "BM25": 0.355,
        "bundled SPLADE off the shelf": 0.269,
        "bundled SPLADE fine-tuned, 1 epoch on 20k labelled pairs": 0.362,
        "RRF(fine-tuned, BM25)": 0.380,
    },
    "seed study (other sample and candidate pool; a level, not a same-protocol figure)": {
        "BM25": 0.349,
        "naver/splade-v3 (BERT-base) off the shelf": 0.391,
        "best fine-tuned (multi-domain)": 0.410,
    },
}
SYSTEMS: dict[str, str] = {
    "bm25": "BM25",
    "offshelf": "SPLADE off the shelf",
    "offshelf_hybrid": "hybrid(off the shelf, BM25)",
    "adapted": "SPLADE adapted to the catalog (flywheel adapt)",
    "adapted_hybrid": "hybrid(adapted, BM25)",
    "supervised": "SPLADE supervised (train labels)",
    "supervised_hybrid": "hybrid(supervised, BM25)",
    "flywheel": "SPLADE flywheel",
    "flywheel_hybrid": "hybrid(flywheel, BM25)",
}
"""System id -> label, in table order."""
EVENT_CHUNK = 2000
"""Searches whose events are written per store transaction."""


# ----------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class BenchConfig:
    """What to run; ``None`` sizes come from the settings (``settings.train.max_examples``)."""

    rounds: int = 5
    sessions_per_round: int = 20_000
    test_queries: int = 2000
    serve_mode: ServeMode = "hybrid"
    train_examples: int | None = None
    supervised_examples: int = 20_000
    seed: int = 42
    min_judged: int = MIN_JUDGED
    threads: int = 0
    """Query-encoding threads (0: every core)."""
    canary_fraction: float = 0.5
    """Sessions that see a passing candidate interleaved with production."""
    canary_sessions: int = 2000
    """Sessions between two looks of the canary controller."""
    canary_looks: int = 10
    """Looks before the round moves on (the canary keeps its pointer if still undecided)."""
    fusion: FusionMethod = DEFAULT_FUSION.method
    """Fusion of the hybrid mode, served, gated and evaluated (``search.fusion``)."""
    splade_weight: float = DEFAULT_FUSION.splade_weight
    """SPLADE's share of the convex fusion (``search.splade_weight``)."""
    rrf_k: int = DEFAULT_RRF_K
    """RRF constant of ``fusion='rrf'`` (``search.rrf_k``: 60 as in Cormack et al.; Qdrant's
    own default is 2)."""
    adapt: bool = False
    """Run ``flywheel adapt`` on the catalog before round 1 (no labels, no test query among
    its generated ones); a passing adapted model is production when the shoppers arrive, so
    the rounds show whether adapting and learning from clicks add up."""

    def workers(self) -> int:
        return self.threads or os.cpu_count() or 1

    def hybrid_fusion(self) -> Fusion:
        """The hybrid mode's fusion (as ``SearchSettings.hybrid_fusion``)."""
        return Fusion(self.fusion, self.splade_weight, self.rrf_k)


def prepare_settings(settings: Settings, cfg: BenchConfig) -> Settings:
    """The benchmark's fixed choices on top of ``settings`` (a copy is returned).

    A passing candidate becomes a canary on ``cfg.canary_fraction`` of sessions, judged by the
    canary controller as in production; no labelled bootstrap or guard set in retraining (the
    flywheel learns from clicks alone, and no test label may reach a gate); enough versions
    kept that no model of the run is garbage-collected.
    """
    out = settings.model_copy(deep=True)
    retrain = out.retrain
    for name in ("bootstrap_dataset", "guard_dataset"):
        if getattr(retrain, name):
            logger.warning(
                "ignoring retrain.%s=%r: the flywheel must learn from clicks alone "
                "and no labelled set may reach the gate",
                name,
                getattr(retrain, name),
            )
            setattr(retrain, name, None)
    out.search.fusion, out.search.splade_weight = cfg.fusion, cfg.splade_weight
    out.search.rrf_k = cfg.rrf_k
    retrain.canary_fraction = cfg.canary_fraction
    retrain.keep_versions = max(retrain.keep_versions, cfg.rounds + 3)
    retrain.drop_rejected_index = False  # rejected candidates are measured on the test queries
    if cfg.train_examples is not None:
        out.train.max_examples = cfg.train_examples
    return out


# ----------------------------------------------------------------------------- split


@dataclass(frozen=True)
class Split:
    """Train intents for the shoppers and the test queries with their human labels."""

    pool: IntentPool
    test_qids: list[str]
    heldout_texts: frozenset[str]
    """Normalised texts of every held-out query (sampled for the test or not)."""

    @property
    def test_texts(self) -> frozenset[str]:
        queries = self.pool.labelled.queries
        return frozenset(normalise_query(queries[q]) for q in self.test_qids)

    def qrels(self) -> dict[str, dict[str, int]]:
        return {q: dict(self.pool.labelled.qrels[q]) for q in self.test_qids}


def split_queries(labelled: LabelledSet, holdout_fraction: float, cfg: BenchConfig) -> Split:
    """Train intents (:class:`IntentPool`) and up to ``cfg.test_queries`` held-out test queries.

    The test queries are :meth:`IntentPool.test_set` (the demo's and the decision benchmark's
    draw too): the pool's held-out side over *every* labelled query, drawn by the reference
    protocol (at least ``min_judged`` judged products of any grade; :func:`sample_queries`
    with ``cfg.seed``).

    Raises:
        DatasetError: no train intent, or no held-out query with enough judgments.
    """
    pool = IntentPool(labelled, holdout_fraction)
    test = pool.test_set(max(1, cfg.test_queries), min_judged=cfg.min_judged, seed=cfg.seed)
    side = labelled.restrict(pool.heldout_ids)
    heldout = frozenset(normalise_query(t) for t in side.queries.values())
    leaked = {normalise_query(i.text) for i in pool.train} & heldout
    if leaked:  # the pool and this split use the same hash: this cannot happen
        raise AssertionError(f"{len(leaked)} train intents are held out, e.g. {min(leaked)!r}")
    return Split(pool, list(test.queries), heldout)


# ----------------------------------------------------------------------------- helpers


class Stopwatch:
    """Named wall-clock durations, in seconds (a stage run twice adds up)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        logger.info("▶ %s", name)
        try:
            yield
        finally:
            took = time.perf_counter() - started
            self.seconds[name] = self.seconds.get(name, 0.0) + took
            logger.info("✓ %s: %.1f s", name, took)


def log_progress(what: str, total: int) -> ProgressFn:
    """A progress callback that logs every 10 %."""
    done, step = [0, 0], max(1, total // 10)

    def advance(n: int) -> None:
        done[0] += n
        if done[0] // step > done[1] or done[0] >= total:
            done[1] = done[0] // step
            logger.info("%s: %d / %d", what, min(done[0], total), total)

    return advance


def test_evaluator(
    settings: Settings, labelled: LabelledSet, qids: Sequence[str], cfg: BenchConfig
) -> HeldOutEvaluator:
    """Every version's runs on the test queries, each computed once (human labels only)."""
    from contextlib import closing

    from services.encoding.versions import VersionEncoders
    from services.index.store import open_index

    return HeldOutEvaluator(
        HeldOutSet(
            labelled.name,
            {q: labelled.queries[q] for q in qids},
            {q: dict(labelled.qrels[q]) for q in qids},
        ),
        encoder=VersionEncoders(ModelRegistry(settings.registry_dir)),
        open_index=lambda version: closing(open_index(settings, version)),
        fusion=cfg.hybrid_fusion(),
        workers=cfg.workers(),
    )


# ----------------------------------------------------------------------------- set-up


def index_version(settings: Settings, version: str, products: Sequence[Product]) -> None:
    """Index the catalog with ``version``, logging progress."""
    from services.indexing import index_products

    progress = log_progress(f"indexing with {version}", len(products))
    index_products(settings, version, products, progress=progress).close()


def register_and_index(settings: Settings, products: Sequence[Product]) -> str:
    """Register the bundled model as v1, index the catalog and make v1 production."""
    from services.indexing import bootstrap_home

    progress = log_progress("indexing with v1", len(products))
    return bootstrap_home(settings, products, progress=progress, actor="benchmark")


def adapt_version(
    settings: Settings, labelled: LabelledSet, split: Split, result: BenchResult
) -> str | None:
    """``flywheel adapt`` on the catalog (promoted at once when its gate passes, as on a new
    shop): the adapted version, or None when the gate kept the bundled model. Its generated
    queries never include a held-out query and are recorded for the leakage check."""
    from retrainer.adapt.run import adapt_catalog

    outcome = adapt_catalog(
        settings,
        labelled.products,
        use_llm=False,
        promote=True,
        actor="benchmark",
        exclude_queries=split.heldout_texts,
    )
    result.learn_from("adapted", frozenset(normalise_query(q) for q in outcome.queries))
    result.adapted = {
        "version": outcome.version,
        "status": outcome.status,
        "message": outcome.message,
        "training": outcome.training,
        "guard": outcome.guard,
        "checks": [c.model_dump(mode="json") for c in outcome.decision.checks]
        if outcome.decision
        else [],
    }
    logger.info("adapt: %s (%s)", outcome.status, outcome.message)
    return outcome.version if outcome.status == "production" else None


def train_supervised(
    settings: Settings, labelled: LabelledSet, split: Split, base: str, examples: int
) -> tuple[str, dict[str, Any], frozenset[str]]:
    """Fine-tune ``base`` on labelled triples of train queries only (the ``flywheel train``
    path), register it (not promoted) and index the catalog with it.

    Returns (version, training facts, normalised queries trained on).
    """
    from retrainer.bootstrap import train_labelled
    from retrainer.training import TrainingExample
    from services.catalog_store import load_products

    trained_on: frozenset[str] = frozenset()

    def check(triples: Sequence[TrainingExample]) -> None:
        nonlocal trained_on
        trained_on = frozenset(t.query for t in triples)
        if trained_on & split.heldout_texts:  # before any training time is spent
            raise AssertionError("a held-out query reached the supervised training set")

    card, result = train_labelled(
        settings,
        labelled,
        base=base,
        examples=examples,
        exclude_queries=split.heldout_texts,
        source=f"train:{labelled.name} (train split)",
        on_triples=check,
    )
    index_version(settings, card.version, load_products(settings.catalog_dir))
    facts = {
        "version": card.version,
        "triples": card.training["examples"],
        "queries": len(trained_on),
        "device": result.device,
        "steps": result.steps,
        "train_seconds": round(result.seconds, 1),
        "examples_per_second": round(result.examples_per_second, 1),
        "final_loss": result.final_loss,
    }
    return card.version, facts, trained_on


# ----------------------------------------------------------------------------- shoppers


@dataclass
class SimulationStats:
    """What one round of simulated shopping did."""

    sessions: int = 0
    searches: int = 0
    distinct_queries: int = 0
    events: int = 0
    actions: dict[str, int] = field(default_factory=dict)
    arms: dict[str, int] = field(default_factory=dict)
    queries: set[str] = field(default_factory=set, repr=False)
    """Normalised texts issued (for the leakage check; not written to the JSON)."""

    def add(self, other: SimulationStats) -> None:
        """Fold another stretch of shopping (e.g. a canary look) into this round's."""
        self.sessions += other.sessions
        self.searches += other.searches
        self.events += other.events
        self.actions = dict(Counter(self.actions) + Counter(other.actions))
        self.arms = dict(Counter(self.arms) + Counter(other.arms))
        self.queries |= other.queries
        self.distinct_queries = len(self.queries)


class Shoppers:
    """Simulated sessions served in-process by :class:`~services.simulator.rounds.
    OfflineShoppers` (routed and interleaved as GET /search does), stored through the real
    event store and snapshotted as the Kafka consumer does."""

    def __init__(self, settings: Settings, pool: IntentPool, cfg: BenchConfig) -> None:
        from contextlib import closing

        from services.encoding.versions import VersionEncoders
        from services.identity import routing_secret
        from services.index.store import open_index

        self.settings = settings
        self.cfg = cfg
        served = ServedLists(
            lambda version: closing(open_index(settings, version)),
            VersionEncoders(ModelRegistry(settings.registry_dir)),
            mode=cfg.serve_mode,
            k=settings.simulator.k,
            fusion=cfg.hybrid_fusion(),
            workers=cfg.workers(),
        )
        self.offline = OfflineShoppers(
            pool,
            settings.simulator,
            served,
            secret=routing_secret(settings),
            catalog=[p.id for p in pool.labelled.products],
        )

    def run_round(
        self,
        version: str,
        round_no: int,
        *,
        canary: str | None = None,
        sessions: int | None = None,
        look: int | None = None,
    ) -> SimulationStats:
        """Simulate sessions against ``version`` (and a canary on ``cfg.canary_fraction`` of
        sessions, interleaved), store their events and snapshot once every window closed."""
        from feedback_ingest.store import EventStore, write_snapshot

        deployment = Deployment(version, canary, self.cfg.canary_fraction if canary else 0.0)
        seed = f"{self.cfg.seed}:round:{round_no}" + (f":look:{look}" if look is not None else "")
        log = self.offline.run(deployment, sessions or self.cfg.sessions_per_round, seed=seed)
        window = self.settings.ingest.store.derived.attribution_window_s
        with EventStore(self.settings.store_path, self.settings.ingest.store) as store:
            written = log.write(store)
            closed = max(e.timestamp for e in log.lists) + timedelta(seconds=window + 1)
            write_snapshot(store, self.settings.exports_dir, now=closed)
        return SimulationStats(
            sessions=log.sessions,
            searches=len(log.lists),
            distinct_queries=len(log.queries),
            events=written,
            actions=dict(log.actions),
            arms=dict(Counter(e.arm for e in log.lists)),
            queries=log.queries,
        )


# ----------------------------------------------------------------------------- retraining


def retrain_round(settings: Settings, watch: Stopwatch, round_no: int) -> dict[str, Any]:
    """One :func:`run_retrain`; its outcome, gate figures and per-stage seconds."""
    from retrainer.pipeline import run_retrain

    marks: list[tuple[str, float]] = []

    def stage(name: str) -> None:
        marks.append((name, time.perf_counter()))
        logger.info("  retrain · %s", name)

    started = time.perf_counter()
    outcome = run_retrain(settings, stage=stage)
    ended = time.perf_counter()
    stages = {
        name: round((marks[i + 1][1] if i + 1 < len(marks) else ended) - at, 1)
        for i, (name, at) in enumerate(marks)
    }
    for name, seconds in stages.items():
        watch.seconds[f"round{round_no}.retrain.{name}"] = seconds
    record: dict[str, Any] = {
        "status": outcome.status,
        "message": outcome.message,
        "candidate": outcome.candidate,
        "seconds": round(ended - started, 1),
        "stages": stages,
    }
    decision = outcome.decision
    if decision is not None:
        heldout = decision.check("heldout")
        record["gate"] = {
            "passed": decision.passed,
            "reasons": decision.reasons,
            "checks": [c.model_dump() for c in decision.checks],
            "heldout_queries": heldout.queries if heldout else 0,
            "production_ndcg": heldout.control_value if heldout else None,
            "candidate_ndcg": heldout.candidate_value if heldout else None,
            "gain": heldout.difference if heldout else None,
            "p_value": heldout.p_value if heldout else None,
        }
    if outcome.candidate:
        training = ModelRegistry(settings.registry_dir).card(outcome.candidate).training
        record["pairs"] = training.get("pairs", {})
        record["train"] = training.get("result", {})
    return record


def canary_round(
    settings: Settings, shoppers: Shoppers, stats: SimulationStats, round_no: int
) -> dict[str, Any]:
    """Judge the running canary on interleaved traffic, a look every ``canary_sessions``
    sessions, until the controller promotes or rolls it back (or ``canary_looks`` run out)."""
    from retrainer.canary import run_controller

    registry = ModelRegistry(settings.registry_dir)
    pointers = registry.pointers()
    assert pointers.production is not None and pointers.canary is not None
    cfg = shoppers.cfg
    decision = None
    for look in range(cfg.canary_looks):
        stats.add(
            shoppers.run_round(
                pointers.production,
                round_no,
                canary=pointers.canary,
                sessions=cfg.canary_sessions,
                look=look,
            )
        )
        decision = run_controller(settings)
        logger.info("  canary look %d: %s (%s)", look + 1, decision.decision, decision.reason)
        if decision.decision != "wait":
            break
    assert decision is not None
    return {
        "decision": decision.decision,
        "reason": decision.reason,
        "signal": decision.signal,
        "test": decision.test,
        "looks": look + 1,
        "evidence": decision.evidence,
        "difference": decision.difference,
        "p_value": decision.p_value,
        "interleaving": decision.interleaving.model_dump() if decision.interleaving else None,
    }


def candidate_figures(
    qrels: dict[str, dict[str, int]], bm25: Run, candidate: tuple[Run, Run]
) -> dict[str, Any]:
    """A candidate's test figures when it did not become production (alone and hybrid;
    p-values against BM25): the gate and the canary judged it on clicks, these are the human
    labels."""
    report = evaluate_runs(
        qrels, {"bm25": bm25, "splade": candidate[0], "hybrid": candidate[1]}, alpha=ALPHA
    )
    return {
        mode: {"means": report.means[mode], "p_values_vs_bm25": report.p_values[mode]}
        for mode in ("splade", "hybrid")
    }


def snapshot_queries(settings: Settings) -> tuple[set[str], set[str]]:
    """(normalised queries served, normalised queries of training pairs) in the latest
    snapshot: what the retrainer can see."""
    snapshot = Snapshot.latest(settings.exports_dir)
    if snapshot is None:
        return set(), set()
    return snapshot.served_queries(), snapshot.pair_queries()


# ----------------------------------------------------------------------------- the benchmark


@dataclass
class RoundResult:
    """Figures of one round (round 0: before any feedback)."""

    round: int
    production: str
    report: EvalReport
    simulation: SimulationStats | None = None
    retrain: dict[str, Any] | None = None


@dataclass
class BenchResult:
    """Everything a run measured; :meth:`to_json` is what ``flywheel.json`` holds."""

    config: BenchConfig
    dataset: str
    protocol: dict[str, Any]
    settings: dict[str, Any]
    timings: dict[str, float]
    test_queries: frozenset[str] = field(repr=False)
    rounds: list[RoundResult] = field(default_factory=list)
    supervised: dict[str, Any] | None = None
    adapted: dict[str, Any] | None = None
    """What ``flywheel adapt`` did (``--adapt``): version, gate status, training record."""
    stopped: str | None = None
    trained_queries: dict[str, set[str]] = field(default_factory=dict, repr=False)
    """'supervised', 'adapted', 'simulated', 'pairs' -> normalised query texts each learnt
    from."""

    def learn_from(self, source: str, queries: set[str] | frozenset[str]) -> None:
        """Record what ``source`` trained on; a test query there aborts the run."""
        leaked = set(queries) & self.test_queries
        if leaked:
            raise AssertionError(f"test queries reached {source}: {sorted(leaked)[:5]}")
        self.trained_queries.setdefault(source, set()).update(queries)

    @property
    def leakage(self) -> dict[str, int]:
        """Test queries found in each training source (always 0: :meth:`learn_from` checks)."""
        return {k: len(v & self.test_queries) for k, v in self.trained_queries.items()}

    def systems(self) -> list[str]:
        return self.rounds[0].report.systems if self.rounds else []

    def best_mode(self) -> dict[str, Any]:
        """The final flywheel model's best mode on the test queries (``search.default_mode``)."""
        final = self.rounds[-1].report
        modes = {"splade": "flywheel", "hybrid": "flywheel_hybrid", "bm25": "bm25"}
        scores = {mode: final.mean(system) for mode, system in modes.items()}
        best = max(scores, key=lambda m: scores[m])
        return {"version": self.rounds[-1].production, "mode": best, "ndcg@10": scores}

    def goal(self) -> dict[str, Any]:
        """Whether a flywheel mode reached nDCG@10 >= 0.41, +15 % over BM25 at p < 0.01."""
        best: dict[str, Any] | None = None
        for result in self.rounds[1:]:
            report = result.report
            bm25 = report.mean("bm25")
            for system in ("flywheel", "flywheel_hybrid"):
                value = report.mean(system)
                p = report.p_values.get(system, {}).get("ndcg@10", 1.0)
                gain = value / bm25 - 1 if bm25 else math.inf
                met = value >= GOAL_NDCG and gain >= GOAL_GAIN and p < ALPHA
                row = {
                    "round": result.round,
                    "system": system,
                    "ndcg@10": value,
                    "gain_over_bm25": gain,
                    "p_value": p,
                    "met": met,
                }
                if best is None or (met, value) > (best["met"], best["ndcg@10"]):
                    best = row
        return {
            "target": {"ndcg@10": GOAL_NDCG, "gain_over_bm25": GOAL_GAIN, "p_below": ALPHA},
            "best": best,
            "met": bool(best and best["met"]),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "config": asdict(self.config),
            "protocol": self.protocol,
            "settings": self.settings,
            "systems": {s: SYSTEMS[s] for s in self.systems()},
            "metrics": list(DEFAULT_METRICS),
            "stat_test": self.rounds[0].report.stat_test if self.rounds else None,
            "alpha": ALPHA,
            "rounds": [
                {
                    "round": r.round,
                    "production": r.production,
                    "means": r.report.means,
                    "p_values_vs_bm25": r.report.p_values,
                    "simulation": (
                        {k: v for k, v in asdict(r.simulation).items() if k != "queries"}
                        if r.simulation
                        else None
                    ),
                    "retrain": r.retrain,
                }
                for r in self.rounds
            ],
            "supervised": self.supervised,
            "adapted": self.adapted,
            "best_mode": self.best_mode() if self.rounds else None,
            "goal": self.goal(),
            "references": REFERENCES,
            "leakage": self.leakage,
            "trained_queries": {k: len(v) for k, v in self.trained_queries.items()},
            "stopped_early": self.stopped,
            "timings_s": {k: round(v, 1) for k, v in self.timings.items()},
        }


def run_benchmark(
    settings: Settings,
    labelled: LabelledSet,
    cfg: BenchConfig,
    *,
    deadline: float | None = None,
    on_round: Callable[[BenchResult], None] | None = None,
) -> BenchResult:
    """Run the whole protocol (module docstring) under ``settings.home``, which must be fresh.

    ``on_round`` sees the result so far after every round (to write partial outputs). With a
    ``deadline`` (a :func:`time.monotonic` value) no round starts that would likely end after
    it (estimate: the longest round so far, else the supervised stage plus indexing).

    Raises:
        FlywheelError: data, model, index or retraining failures.
        AssertionError: a test query reached a training set (it must never happen).
    """
    settings = prepare_settings(settings, cfg)
    registry = ModelRegistry(settings.registry_dir)
    if registry.versions():
        raise FlywheelError(f"{settings.home} already holds models; give a fresh --home.")
    watch = Stopwatch()
    with watch.stage("split"):
        split = split_queries(labelled, settings.simulator.holdout_fraction, cfg)
    qids, qrels, test_texts = split.test_qids, split.qrels(), split.test_texts
    logger.info(
        "%s: %d train intents, %d held-out queries, %d test queries, %d products",
        labelled.name,
        len(split.pool.train),
        len(split.heldout_texts),
        len(qids),
        len(labelled.products),
    )
    result = BenchResult(
        config=cfg,
        dataset=labelled.name,
        protocol={
            "corpus": len(labelled.products),
            "test_queries": len(qids),
            "heldout_queries": len(split.heldout_texts),
            "train_intents": len(split.pool.train),
            "holdout_fraction": settings.simulator.holdout_fraction,
            "split_salt": SPLIT_SALT,
            "seed": cfg.seed,
            "min_judged": cfg.min_judged,
            "top_k": sy.LIMIT,
            "grade": labelled.notes.get("grade", f"0..{labelled.max_grade}"),
            "canary": f"{cfg.canary_fraction:.0%} of sessions, interleaved, judged every "
            f"{cfg.canary_sessions} sessions (at most {cfg.canary_looks} looks)",
        },
        settings={
            "train": settings.train.model_dump(),
            "retrain": settings.retrain.model_dump(mode="json"),
            "simulator": settings.simulator.model_dump(),
            "encoder": settings.encoder.model_dump(),
        },
        timings=watch.seconds,
        test_queries=test_texts,
    )
    with watch.stage("index.v1"):
        v1 = register_and_index(settings, labelled.products)
    evaluator = test_evaluator(settings, labelled, qids, cfg)

    def model_runs(version: str) -> tuple[Run, Run]:
        found = evaluator.runs(version, ["splade", "hybrid"])
        return found["splade"], found["hybrid"]

    runs: dict[str, Run] = {}
    with watch.stage("eval.round0"):
        runs["bm25"] = evaluator.run(v1, "bm25")
        runs["offshelf"], runs["offshelf_hybrid"] = model_runs(v1)
    by_version: dict[str, tuple[Run, Run]] = {v1: (runs["offshelf"], runs["offshelf_hybrid"])}
    if cfg.adapt:
        with watch.stage("adapt"):
            adapted = adapt_version(settings, labelled, split, result)
            if adapted is not None:
                runs["adapted"], runs["adapted_hybrid"] = by_version[adapted] = model_runs(adapted)
    if cfg.supervised_examples > 0:
        with watch.stage("supervised"):
            version, result.supervised, trained = train_supervised(
                settings, labelled, split, v1, cfg.supervised_examples
            )
            result.learn_from("supervised", trained)
            runs["supervised"], runs["supervised_hybrid"] = model_runs(version)

    def finish_round(number: int, production: str, *rest: Any) -> None:
        ordered = {s: runs[s] for s in SYSTEMS if s in runs}
        ordered["flywheel"], ordered["flywheel_hybrid"] = by_version[production]
        report = evaluate_runs(
            qrels,
            ordered,
            baseline="bm25",
            alpha=ALPHA,
            dataset=f"{labelled.name} round {number}",
            protocol=result.protocol,
        )
        result.rounds.append(RoundResult(number, production, report, *rest))
        log_round(result.rounds[-1])
        if on_round:
            on_round(result)

    with watch.stage("eval.round0"):  # the first ranx call compiles its numba code
        finish_round(0, registry.pointers().production or v1)
    shoppers = Shoppers(settings, split.pool, cfg)
    for number in range(1, cfg.rounds + 1):
        durations = [v for k, v in watch.seconds.items() if k.startswith("round") and "." not in k]
        estimate = max(
            durations or [watch.seconds.get("supervised", 0.0) + watch.seconds["index.v1"]]
        )
        if deadline is not None and time.monotonic() + estimate > deadline:
            result.stopped = f"time budget: round {number} would likely end after the deadline"
            logger.warning("stopping before round %d: %s", number, result.stopped)
            break
        with watch.stage(f"round{number}"):
            production = registry.pointers().production
            assert production is not None
            with watch.stage(f"round{number}.simulate"):
                stats = shoppers.run_round(production, number)
            result.learn_from("simulated", stats.queries)
            with watch.stage(f"round{number}.retrain"):
                record = retrain_round(settings, watch, number)
            if record["status"] == "canary":
                with watch.stage(f"round{number}.canary"):
                    record["canary"] = canary_round(settings, shoppers, stats, number)
                result.learn_from("simulated", stats.queries)
            served, pairs = snapshot_queries(settings)
            result.learn_from("simulated", served)
            result.learn_from("pairs", pairs)
            production = registry.pointers().production
            assert production is not None
            candidate = record.get("candidate")
            for version in dict.fromkeys(v for v in (production, candidate) if v):
                if version not in by_version:  # a rejected candidate too: was the gate right?
                    with watch.stage(f"round{number}.eval"):
                        by_version[version] = model_runs(version)
            if candidate and candidate != production:
                record["candidate_on_test"] = candidate_figures(
                    qrels, runs["bm25"], by_version[candidate]
                )
            finish_round(number, production, stats, record)
    return result


def log_round(result: RoundResult) -> None:
    report = result.report
    figures = ", ".join(f"{s} {report.mean(s):.3f}" for s in report.systems)
    logger.info("round %d (production %s) nDCG@10: %s", result.round, result.production, figures)
