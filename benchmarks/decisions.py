"""Does the loop decide right? Every decision signal measured against the simulator's truth.

The simulator knows the human grade of every (query, product), so it knows the true nDCG@10
of every list a model serves. This benchmark builds model pairs whose true difference is known
and runs repeated simulated trials of each decision signal on them:

* pairs (production -> candidate): **A/A** (v1 against itself), **better** (v1 against v1
  fine-tuned on many labelled triples of the shoppers' queries at a higher learning rate),
  **slightly better** (v1 against v1 fine-tuned on fewer), and their mirrors **worse** and
  **slightly worse** (the fine-tuned model in production, v1 the candidate). Their true
  difference is the mean true nDCG@10 of the lists each serves over the shoppers' query
  distribution (and, for reference, on held-out labelled queries no shopper issues).
* offline signals, each trial a fresh round of production traffic through the real event
  store and snapshot, judged on the retrainer's click-judged held-out queries
  (:mod:`retrainer.gate`): ``gate superiority`` (the old rule: a gain >= 0.005 at p <= 0.05)
  and ``gate non-inferiority`` (do no harm: the one-sided 95% lower bound > -0.01), on full
  lists and on condensed lists (judged products only; Sakai, 2007), and ``gate not shown
  worse`` (fails only a candidate whose one-sided 95% upper bound is below 0).
* online signals, each trial a stream of canary-bucket lists looked at every ``--look-every``
  lists until the judge decides or ``--max-lists`` per arm (inconclusive), with the canary
  controller's own judges (:mod:`retrainer.canary`): ``A/B fixed`` (the old controller: a
  z-test at every look, non-inferiority margin 0.01), ``A/B sequential`` (mSPRT, superiority),
  ``interleaving fixed`` and ``interleaving sequential`` (team-draft interleaving; Chapelle et
  al., 2012; mixture SPRT, Johari et al., 2017).

A promotion judge is right when it promotes a truly better candidate and does not promote an
equal or worse one; a do-no-harm gate is right when it passes a candidate that is not worse
and stops a worse one. A false promotion is a promotion (or a pass) of a candidate that is not
better (worse, for the gates); a false rollback is a rollback, as worse, of a better one.

    python -m benchmarks.decisions --out reports/decisions          # Home Depot sample
    python -m benchmarks.decisions --quick --out /tmp/decisions      # generated, ~2 minutes
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from retrainer.bootstrap import train_labelled
from retrainer.canary import judge_ab, judge_interleaving
from retrainer.data import load_feedback
from retrainer.gate import CANDIDATE, PRODUCTION, heldout_check
from retrainer.scratch import index_reader
from services.datasets.protocol import normalise_query, query_id
from services.decisions import ArmStats, InterleavingStats
from services.encoding.versions import VersionEncoders
from services.evaluation.heldout import HeldOutEvaluator, HeldOutSet
from services.evaluation.metrics import condensed, evaluate_runs
from services.indexing import bootstrap_home, index_products
from services.interleaving import TEAM_A, team_draft
from services.registry import ModelRegistry
from services.settings import CanaryPolicy, GatePolicy, SearchMode, Settings, SimulatorSettings
from services.simulator import IntentPool, load_intents
from services.simulator.behaviour import ShopperBehaviour
from services.simulator.outcomes import GAIN, click_ndcg, interleaving_outcome, true_ndcg
from services.simulator.rounds import Deployment, OfflineShoppers, ServedLists
from services.snapshots import Snapshot

logger = logging.getLogger("benchmarks.decisions")

PAIRS = ("A/A", "better", "slightly better", "slightly worse", "worse")
PAIR_ROLES = {
    "A/A": ("v1", "v1"),
    "better": ("v1", "strong"),
    "slightly better": ("v1", "mild"),
    "slightly worse": ("mild", "v1"),
    "worse": ("strong", "v1"),
}
"""Pair -> (production role, candidate role): two fine-tuned models and their mirrors."""
BETTER = frozenset({"better", "slightly better"})
WORSE = frozenset({"slightly worse", "worse"})
ONLINE = {
    "A/B fixed (old controller)": ("ab", "fixed"),
    "A/B sequential": ("ab", "sequential"),
    "interleaving fixed": ("interleaving", "fixed"),
    "interleaving sequential": ("interleaving", "sequential"),
}
OFFLINE = {
    "gate superiority (old)": GatePolicy(heldout_rule="superiority", judged_only=False),
    "gate non-inferiority": GatePolicy(heldout_rule="non_inferiority", judged_only=False),
    "gate non-inferiority, judged only": GatePolicy(
        heldout_rule="non_inferiority", judged_only=True
    ),
    "gate not shown worse, judged only": GatePolicy(heldout_rule="not_worse", judged_only=True),
}


@dataclass(frozen=True)
class Config:
    """What to run (the defaults are the README's run; ``quick`` shrinks everything)."""

    dataset: str | None = None
    products: int = 5000
    trials: int = 50
    offline_trials: int = 10
    max_lists: int = 20_000
    """Production's bound (``CanaryPolicy.max_lists_per_arm``)."""
    look_every: int = 100
    traffic_lists: int = 3000
    strong_examples: int = 4000
    strong_learning_rate: float = 1e-4
    mild_examples: int = 2000
    mode: SearchMode = "hybrid"
    seed: int = 7
    online: bool = True
    offline: bool = True


@dataclass
class Tally:
    """Outcomes of one signal on one pair over its trials."""

    outcomes: Counter[str] = field(default_factory=Counter)
    lists: list[int] = field(default_factory=list)
    """Lists per arm when a decision was made (online signals)."""

    def add(self, outcome: str, lists: int | None = None) -> None:
        self.outcomes[outcome] += 1
        if lists is not None and outcome != "inconclusive":
            self.lists.append(lists)

    def share(self, *names: str) -> float:
        total = sum(self.outcomes.values())
        return sum(self.outcomes[n] for n in names) / total if total else 0.0


# ----------------------------------------------------------------------------- set-up


def existing_models(settings: Settings) -> dict[str, str] | None:
    """The roles of a home this benchmark built before (``--home`` kept), if complete."""
    registry = ModelRegistry(settings.registry_dir)
    production = registry.pointers().production
    if production is None:
        return None
    roles = {"v1": production}
    for version in registry.versions():
        source = registry.card(version).source
        if source.startswith("decisions:"):
            roles[source.removeprefix("decisions:")] = version
    return roles if {"v1", "strong", "mild"} <= set(roles) else None


def build_models(settings: Settings, pool: IntentPool, cfg: Config) -> dict[str, str]:
    """Register v1 and the two trained versions (strong, mild), each indexed; returns
    role -> version. A home that already holds them (``--home`` of an earlier run) is reused."""
    found = existing_models(settings)
    if found is not None:
        logger.info("reusing the models of %s: %s", settings.home, found)
        return found
    labelled = pool.labelled
    v1 = bootstrap_home(settings, labelled.products, actor="benchmark")
    never = frozenset(normalise_query(i.text) for i in pool.heldout)
    roles = {"v1": v1}
    for role, examples, learning_rate in (
        ("strong", cfg.strong_examples, cfg.strong_learning_rate),
        ("mild", cfg.mild_examples, settings.train.learning_rate),
    ):
        started = time.perf_counter()
        tuned = settings.model_copy(deep=True)
        tuned.train.learning_rate = learning_rate
        card, _ = train_labelled(
            tuned,
            labelled,
            base=v1,
            examples=examples,
            exclude_queries=never,
            source=f"decisions:{role}",
        )
        index_products(settings, card.version, labelled.products).close()
        logger.info("%s: %s in %.0f s", role, card.version, time.perf_counter() - started)
        roles[role] = card.version
    return roles


def served_lists(settings: Settings, cfg: Config, scratch: Path) -> ServedLists:
    """Each version's lists, ranked as GET /search ranks them (k = 10, serving mode)."""
    return ServedLists(
        index_reader(settings, scratch),
        VersionEncoders(ModelRegistry(settings.registry_dir)),
        mode=cfg.mode,
        k=10,
        fusion=settings.search.hybrid_fusion(),
    )


def truth(served: ServedLists, pool: IntentPool, version: str) -> float:
    """Mean true nDCG@10 of ``version``'s lists over the shoppers' (uniform) query draw."""
    scores = [
        true_ndcg(served.get(version, " ".join(i.text.split())), i.grades) for i in pool.train
    ]
    return sum(scores) / len(scores)


# ----------------------------------------------------------------------------- online


def _react_gains(
    behaviour: ShopperBehaviour, results: list[str], grades: dict[str, int], rng: random.Random
) -> dict[str, int]:
    gains: dict[str, int] = {}
    for r in behaviour.react(results, grades, rng):
        gain = GAIN.get(r.action, 0)
        if gain:
            gains[r.product_id] = max(gains.get(r.product_id, 0), gain)
    return gains


class _Arm:
    """Running mean and variance of per-list online nDCG (Welford)."""

    def __init__(self, version: str) -> None:
        self.version, self.n, self.mean, self.m2 = version, 0, 0.0, 0.0

    def add(self, x: float) -> None:
        self.n += 1
        delta = x - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (x - self.mean)

    def stats(self) -> ArmStats:
        variance = self.m2 / (self.n - 1) if self.n > 1 else 0.0
        return ArmStats(
            version=self.version, lists=self.n, mean=self.mean, variance=variance, ctr_at_10=0
        )


def online_trial(
    kind: str,
    policy: CanaryPolicy,
    pair: tuple[str, str],
    served: ServedLists,
    pool: IntentPool,
    behaviour: ShopperBehaviour,
    cfg: Config,
    rng: random.Random,
) -> tuple[str, int]:
    """One canary, judged every ``look_every`` canary lists: (decision, lists per arm)."""
    production, candidate = pair
    arms = {"production": _Arm(production), "canary": _Arm(candidate)}
    wins = losses = ties = lists = 0
    while True:
        intent = pool.draw(rng)
        text = " ".join(intent.text.split())
        theirs = served.get(production, text)
        if kind == "ab":
            arm = "canary" if rng.random() < 0.5 else "production"
            results = served.get(candidate if arm == "canary" else production, text)
            arms[arm].add(click_ndcg(results, _react_gains(behaviour, results, intent.grades, rng)))
            if arm != "canary":
                continue
        else:
            merged = team_draft(served.get(candidate, text), theirs, 10, rng)
            results = [pid for pid, _ in merged]
            teams = [candidate if team == TEAM_A else f"{production}*" for _, team in merged]
            gains = _react_gains(behaviour, results, intent.grades, rng)
            outcome = interleaving_outcome(results, teams, gains, candidate)
            wins += outcome == "win"
            losses += outcome == "loss"
            ties += outcome == "tie"
        lists += 1
        if lists % cfg.look_every == 0:
            if kind == "ab":
                verdict = judge_ab(arms["production"].stats(), arms["canary"].stats(), policy)
            else:
                stats = InterleavingStats(lists=lists, wins=wins, losses=losses, ties=ties)
                verdict = judge_interleaving(stats, policy)
            if verdict.decision != "wait":
                return verdict.decision, lists
        if lists >= cfg.max_lists:
            return "inconclusive", lists


# ----------------------------------------------------------------------------- offline


def offline_trial(
    pair: tuple[str, str],
    shoppers: OfflineShoppers,
    evaluator: HeldOutEvaluator,
    cfg: Config,
    scratch: Path,
    trial: int,
    settings: Settings,
) -> dict[str, bool]:
    """A round of production traffic through the real store and snapshot; each gate rule's
    verdict on the click-judged held-out queries."""
    from feedback_ingest.store import EventStore, write_snapshot

    production, candidate = pair
    sessions = max(1, round(cfg.traffic_lists / settings.simulator.queries_per_session))
    log = shoppers.run(Deployment(production), sessions, seed=f"offline:{pair}:{trial}")
    home = scratch / f"trial-{trial}"
    home.mkdir(parents=True)
    try:
        with EventStore(home / "events.duckdb", settings.ingest.store) as store:
            log.write(store)
            last = max(e.timestamp for e in log.lists)
            folder = write_snapshot(store, home / "exports", now=last + timedelta(hours=1))
        data = load_feedback(
            Snapshot(folder), {}, heldout_fraction=settings.retrain.heldout_fraction
        )
    finally:
        shutil.rmtree(home, ignore_errors=True)
    runs = {
        PRODUCTION: evaluator.run(production, cfg.mode),
        CANDIDATE: evaluator.run(candidate, cfg.mode),
    }
    qrels = {q: g for q, g in data.heldout_qrels.items() if q in runs[PRODUCTION]}
    if not qrels:
        return dict.fromkeys(OFFLINE, False)
    reports = {
        judged_only: evaluate_runs(
            qrels,
            {k: condensed(qrels, r) for k, r in runs.items()} if judged_only else runs,
            baseline=PRODUCTION,
        )
        for judged_only in (False, True)
    }
    return {
        name: heldout_check(
            reports[policy.judged_only], policy, production=production, candidate=candidate
        ).passed
        for name, policy in OFFLINE.items()
    }


def gate_queries(pool: IntentPool, fraction: float) -> HeldOutSet:
    """Every shopper query the retrainer would hold out for the gate (no judgments yet)."""
    from retrainer.data import is_heldout

    texts = {normalise_query(i.text) for i in pool.train}
    held = sorted(t for t in texts if is_heldout(t, fraction))
    return HeldOutSet("gate", {query_id(t): t for t in held}, {})


# ----------------------------------------------------------------------------- the run


def expected(pair: str, signal_is_gate: bool) -> set[str]:
    """The right outcomes of a signal on a pair."""
    if signal_is_gate:  # do no harm: pass anything not worse
        return {"fail"} if pair in WORSE else {"pass"}
    return {"promote"} if pair in BETTER else {"rollback", "inconclusive"}


def run(cfg: Config, home: Path) -> dict[str, Any]:
    """The whole benchmark under ``home`` (fresh); returns everything measured."""
    settings = Settings(home=home)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    pool = load_intents(
        SimulatorSettings(dataset=cfg.dataset, seed=cfg.seed), products=cfg.products
    )
    logger.info(
        "%s: %d products, %d shopper queries, %d held-out",
        pool.labelled.name,
        len(pool.labelled.products),
        len(pool.train),
        len(pool.heldout),
    )
    roles = build_models(settings, pool, cfg)
    timings["models"] = time.perf_counter() - started
    scratch = home / "scratch"
    served = served_lists(settings, cfg, scratch)
    texts = [" ".join(i.text.split()) for i in pool.train]
    for version in roles.values():
        served.prepare(version, texts)
    true = {role: truth(served, pool, version) for role, version in roles.items()}
    test_eval = HeldOutEvaluator(
        pool.test_set(2000),
        encoder=VersionEncoders(ModelRegistry(settings.registry_dir)),
        open_index=index_reader(settings, scratch),
        fusion=settings.search.hybrid_fusion(),
    )
    test = {role: test_eval.report({"m": (v, cfg.mode)}).mean("m") for role, v in roles.items()}
    pairs = {p: (roles[a], roles[b]) for p, (a, b) in PAIR_ROLES.items()}
    deltas = {p: true[b] - true[a] for p, (a, b) in PAIR_ROLES.items()}
    test_deltas = {p: test[b] - test[a] for p, (a, b) in PAIR_ROLES.items()}
    timings["truth"] = time.perf_counter() - started - timings["models"]
    behaviour = ShopperBehaviour(settings.simulator, pool.max_grade)
    tallies: dict[str, dict[str, Tally]] = {}
    for name, (kind, test_kind) in ONLINE.items() if cfg.online else ():
        if test_kind == "fixed":  # the controller's old defaults
            policy = CanaryPolicy(
                judge=kind, test="fixed", require_better=False, margin=0.01, min_lists_per_arm=200
            )
        else:
            policy = CanaryPolicy(judge=kind, test="sequential")
        tallies[name] = {}
        for pair in PAIRS:
            tally = Tally()
            for trial in range(cfg.trials):
                rng = random.Random(f"{cfg.seed}:{name}:{pair}:{trial}")
                decision, lists = online_trial(
                    kind, policy, pairs[pair], served, pool, behaviour, cfg, rng
                )
                tally.add(decision, lists)
            tallies[name][pair] = tally
            logger.info("%s / %s: %s", name, pair, dict(tally.outcomes))
    timings["online"] = time.perf_counter() - started - timings["models"] - timings["truth"]
    evaluator = HeldOutEvaluator(
        gate_queries(pool, settings.retrain.heldout_fraction),
        encoder=VersionEncoders(ModelRegistry(settings.registry_dir)),
        open_index=index_reader(settings, scratch),
        fusion=settings.search.hybrid_fusion(),
    )
    shoppers = OfflineShoppers(
        pool,
        settings.simulator,
        served,
        secret=b"decisions",
        catalog=[p.id for p in pool.labelled.products],
    )
    for name in OFFLINE:
        tallies[name] = {pair: Tally() for pair in PAIRS}
    for pair in PAIRS if cfg.offline else ():
        for trial in range(cfg.offline_trials):
            verdicts = offline_trial(
                pairs[pair], shoppers, evaluator, cfg, scratch, trial, settings
            )
            for name, passed in verdicts.items():
                tallies[name][pair].add("pass" if passed else "fail")
        logger.info("offline / %s: %s", pair, {n: dict(tallies[n][pair].outcomes) for n in OFFLINE})
    timings["offline"] = time.perf_counter() - started - sum(timings.values())
    timings["total"] = time.perf_counter() - started
    return summarise(cfg, pool, roles, deltas, test_deltas, true, tallies, timings)


def summarise(
    cfg: Config,
    pool: IntentPool,
    roles: dict[str, str],
    deltas: dict[str, float],
    test_deltas: dict[str, float],
    true: dict[str, float],
    tallies: dict[str, dict[str, Tally]],
    timings: dict[str, float],
) -> dict[str, Any]:
    signals: dict[str, Any] = {}
    for name, by_pair in tallies.items():
        gate = name in OFFLINE
        rows = {}
        correct = total = false_promotions = false_rollbacks = 0
        for pair, tally in by_pair.items():
            n = sum(tally.outcomes.values())
            right = sum(tally.outcomes[o] for o in expected(pair, gate))
            correct, total = correct + right, total + n
            promoted = tally.outcomes["pass" if gate else "promote"]
            # Online: promoting anything not better; a gate: passing anything worse.
            wrong_promotion = promoted if (pair in WORSE if gate else pair not in BETTER) else 0
            wrong_rollback = (
                tally.outcomes["rollback"] if pair in ("better", "slightly better") else 0
            )
            false_promotions += wrong_promotion
            false_rollbacks += wrong_rollback
            rows[pair] = {
                "trials": n,
                "outcomes": dict(tally.outcomes),
                "correct": right / n if n else None,
                "false_promotions": wrong_promotion / n if n else None,
                "false_rollbacks": wrong_rollback / n if n else None,
                "median_lists": statistics.median(tally.lists) if tally.lists else None,
                "mean_lists": statistics.fmean(tally.lists) if tally.lists else None,
            }
        signals[name] = {
            "kind": "gate (do no harm)" if gate else "online judge",
            "pairs": rows,
            "correct": correct / total if total else None,
            "false_promotions": false_promotions,
            "false_rollbacks": false_rollbacks,
            "trials": total,
        }
    return {
        "config": asdict(cfg),
        "dataset": pool.labelled.name,
        "products": len(pool.labelled.products),
        "shopper_queries": len(pool.train),
        "cores": os.cpu_count(),
        "versions": roles,
        "true_ndcg": true,
        "true_delta": deltas,
        "test_delta": test_deltas,
        "signals": signals,
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
    }


def to_markdown(result: dict[str, Any]) -> str:
    cfg = result["config"]
    lines = [
        f"# Decision quality: {result['dataset']} ({result['products']:,} products, "
        f"{result['shopper_queries']:,} shopper queries, {result['cores']} cores)",
        "",
        "| pair | true Δ nDCG@10 (shopper queries) | Δ on held-out labelled queries |",
        "| --- | ---: | ---: |",
    ]
    for pair in PAIRS:
        lines.append(
            f"| {pair} | {result['true_delta'][pair]:+.4f} | {result['test_delta'][pair]:+.4f} |"
        )
    lines += [
        "",
        f"Online judges: {cfg['trials']} trials per pair, a look every {cfg['look_every']} "
        f"canary lists, at most {cfg['max_lists']:,} lists per arm. Gates: "
        f"{cfg['offline_trials']} trials per pair, each a round of {cfg['traffic_lists']:,} "
        "production lists through the event store.",
        "",
        "| signal | correct | false promotions | false rollbacks | "
        + " | ".join(f"{p}: outcomes (median lists)" for p in PAIRS)
        + " |",
        "| --- | ---: | ---: | ---: |" + " --- |" * len(PAIRS),
    ]
    for name, signal in result["signals"].items():
        cells = []
        for pair in PAIRS:
            row = signal["pairs"][pair]
            outcomes = ", ".join(f"{k} {v}" for k, v in sorted(row["outcomes"].items()))
            lists = f" ({row['median_lists']:.0f})" if row["median_lists"] else ""
            cells.append(outcomes + lists)
        lines.append(
            f"| {name} | {signal['correct']:.0%} | {signal['false_promotions']} | "
            f"{signal['false_rollbacks']} | " + " | ".join(cells) + " |"
        )
    lines += ["", f"Timings (s): {result['timings_s']}", ""]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> tuple[Config, argparse.Namespace]:
    d = Config()
    parser = argparse.ArgumentParser(prog="python -m benchmarks.decisions", description=__doc__)
    parser.add_argument(
        "--dataset", default=None, help="labelled set (default: Home Depot if found)"
    )
    parser.add_argument("--products", type=int, default=d.products)
    parser.add_argument("--trials", type=int, default=d.trials)
    parser.add_argument("--offline-trials", type=int, default=d.offline_trials)
    parser.add_argument("--max-lists", type=int, default=d.max_lists)
    parser.add_argument("--look-every", type=int, default=d.look_every)
    parser.add_argument("--traffic-lists", type=int, default=d.traffic_lists)
    parser.add_argument("--strong-examples", type=int, default=d.strong_examples)
    parser.add_argument("--mild-examples", type=int, default=d.mild_examples)
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument(
        "--signals", default="online,offline", help="which signals to run: online, offline"
    )
    parser.add_argument("--quick", action="store_true", help="generated catalog, tiny sizes")
    parser.add_argument("--out", type=Path, default=Path("reports/decisions"))
    parser.add_argument(
        "--home", type=Path, default=None, help="keep this FLYWHEEL_HOME (and reuse its models)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        cfg = Config(
            dataset="generated",
            products=400,
            trials=8,
            offline_trials=2,
            max_lists=600,
            traffic_lists=600,
            strong_examples=64,
            mild_examples=16,
            seed=args.seed,
        )
    else:
        cfg = Config(
            dataset=args.dataset,
            products=args.products,
            trials=args.trials,
            offline_trials=args.offline_trials,
            max_lists=args.max_lists,
            look_every=args.look_every,
            traffic_lists=args.traffic_lists,
            strong_examples=args.strong_examples,
            mild_examples=args.mild_examples,
            seed=args.seed,
            online="online" in args.signals,
            offline="offline" in args.signals,
        )
    return cfg, args


def main(argv: Sequence[str] | None = None) -> int:
    cfg, args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=[
            logging.StreamHandler(sys.stderr),
            logging.FileHandler(args.out / "decisions.log", "w"),
        ],
    )
    home = args.home or Path(tempfile.mkdtemp(prefix="flywheel-decisions-"))
    try:
        result = run(cfg, home)
    finally:
        if args.home is None:
            shutil.rmtree(home, ignore_errors=True)
    (args.out / "decisions.json").write_text(json.dumps(result, indent=2) + "\n")
    markdown = to_markdown(result)
    (args.out / "decisions.md").write_text(markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
