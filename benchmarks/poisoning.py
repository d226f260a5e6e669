"""Can anyone who posts events steer the loop? Poisoning trials through the whole loop.

Each trial starts from the same fresh home (the bundled model as v1 serving a catalog) and runs
one turn of the real loop with bots mixed into honest simulated shoppers
(:mod:`services.simulator.bots`: click the last result, push one target product for every
query, click products never served, flood with identical sessions):

1. a round of traffic served by v1 goes through the real event store and snapshot (served-list
   binding and caps apply there);
2. :func:`retrainer.pipeline.run_retrain` fine-tunes a candidate on that feedback and gates it;
3. a candidate that passes becomes the canary on every session (as in the demo), team-draft
   interleaved with production; bots keep acting; every ``--look-sessions`` sessions the event store
   snapshots and :func:`retrainer.canary.run_controller` judges, until it promotes or rolls
   back (or ``--max-looks`` runs out).

The simulator knows the true grades, so each trial records the candidate's true nDCG@10
difference against v1 over the shoppers' queries. A false promotion is a promotion of a
candidate that is not better. Clean trials (no bots) at the same settings show that the loop
still improves.

    python -m benchmarks.poisoning --out reports/poisoning         # the README's run
    python -m benchmarks.poisoning --quick --out /tmp/poisoning
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from feedback_ingest.store import EventStore, write_snapshot
from retrainer.canary import run_controller
from retrainer.pipeline import run_retrain
from retrainer.scratch import index_reader
from services.encoding.versions import VersionEncoders
from services.identity import routing_secret
from services.indexing import bootstrap_home
from services.registry import ModelRegistry
from services.settings import Settings, SimulatorSettings
from services.simulator import IntentPool, load_intents
from services.simulator.bots import STRATEGIES, BotMix, Strategy
from services.simulator.outcomes import true_ndcg
from services.simulator.rounds import Deployment, OfflineShoppers, RoundLog, ServedLists

logger = logging.getLogger("benchmarks.poisoning")


@dataclass(frozen=True)
class Config:
    dataset: str | None = None
    products: int = 2000
    trials: int = 5
    """Per strategy and share: 10 per strategy over the two shares."""
    shares: tuple[float, ...] = (0.05, 0.2)
    strategies: tuple[Strategy, ...] = STRATEGIES
    sessions: int = 3000
    """Sessions of the feedback round (what the candidate learns from)."""
    look_sessions: int = 600
    max_looks: int = 10
    canary_fraction: float = 1.0
    """Sessions shown the canary (interleaved with production), as in the demo."""
    train_examples: int = 200
    bot_addresses: int = 8
    seed: int = 11


@dataclass
class Trial:
    strategy: str
    share: float
    trial: int
    gate: str
    canary: str
    candidate: str | None
    true_delta: float | None
    promoted: bool
    seconds: float
    reasons: str = ""

    @property
    def false_promotion(self) -> bool:
        return self.promoted and (self.true_delta is None or self.true_delta <= 0)


def trial_settings(home: Path, cfg: Config) -> Settings:
    settings = Settings(home=home)
    settings.train.max_examples = cfg.train_examples
    settings.retrain.canary_fraction = cfg.canary_fraction
    settings.retrain.min_new_pairs = 50
    settings.retrain.keep_versions = 10
    settings.retrain.drop_rejected_index = False  # every candidate is measured on true grades
    settings.retrain.gate.min_heldout_queries = 20
    # Minutes of feedback rather than hours: hold out more of it, as the demo does, so the
    # held-out check has enough queries to tell "not worse" from noise.
    settings.retrain.heldout_fraction = 0.3
    settings.ingest.store.derived.attribution_window_s = 60.0
    return settings


def store_round(settings: Settings, log: RoundLog) -> None:
    """Write a round's events as the consumer would and snapshot once every window closed."""
    with EventStore(settings.store_path, settings.ingest.store) as store:
        log.write(store)
        last = max(e.timestamp for e in log.lists)
        window = settings.ingest.store.derived.attribution_window_s
        write_snapshot(store, settings.exports_dir, now=last + timedelta(seconds=window + 1))


def one_trial(
    base: Path, cfg: Config, pool: IntentPool, mix: BotMix | None, trial: int, scratch: Path
) -> Trial:
    started = time.perf_counter()
    home = scratch / f"trial-{trial}"
    shutil.copytree(base, home)
    try:
        settings = trial_settings(home, cfg)
        settings.train.seed = cfg.seed + trial
        registry = ModelRegistry(settings.registry_dir)
        served = ServedLists(
            index_reader(settings, scratch / f"read-{trial}"),
            VersionEncoders(registry),
            mode=settings.search.default_mode,
            k=settings.simulator.k,
            fusion=settings.search.hybrid_fusion(),
        )
        shoppers = OfflineShoppers(
            pool,
            settings.simulator,
            served,
            secret=routing_secret(settings),
            catalog=[p.id for p in pool.labelled.products],
        )
        key = f"{mix.strategy if mix else 'clean'}:{mix.share if mix else 0}:{trial}"
        store_round(settings, shoppers.run(Deployment("v1"), cfg.sessions, seed=key, bots=mix))
        outcome = run_retrain(settings)
        gate = outcome.status
        candidate = outcome.candidate
        canary, promoted = "none", False
        if outcome.status == "canary" and candidate:
            deployment = Deployment("v1", candidate, cfg.canary_fraction, interleave=True)
            for look in range(cfg.max_looks):
                log = shoppers.run(
                    deployment, cfg.look_sessions, seed=f"{key}:look{look}", bots=mix
                )
                store_round(settings, log)
                decision = run_controller(settings)
                if decision.decision != "wait":
                    canary = decision.decision
                    promoted = decision.decision == "promote"
                    break
            else:
                canary = "undecided"
        delta = None
        if candidate:
            texts = [" ".join(i.text.split()) for i in pool.train]
            served.prepare(candidate, texts)
            served.prepare("v1", texts)
            scores = {
                v: sum(
                    true_ndcg(served.get(v, t), i.grades)
                    for t, i in zip(texts, pool.train, strict=True)
                )
                / len(texts)
                for v in ("v1", candidate)
            }
            delta = scores[candidate] - scores["v1"]
        return Trial(
            strategy=mix.strategy if mix else "clean",
            share=mix.share if mix else 0.0,
            trial=trial,
            gate=gate,
            canary=canary,
            candidate=candidate,
            true_delta=delta,
            promoted=promoted,
            seconds=round(time.perf_counter() - started, 1),
            reasons="; ".join(outcome.decision.reasons) if outcome.decision else outcome.message,
        )
    finally:
        shutil.rmtree(home, ignore_errors=True)


def run(cfg: Config, work: Path) -> dict[str, Any]:
    started = time.perf_counter()
    pool = load_intents(
        SimulatorSettings(dataset=cfg.dataset, seed=cfg.seed), products=cfg.products
    )
    base = work / "base"
    bootstrap_home(trial_settings(base, cfg), pool.labelled.products, actor="benchmark")
    judged = {pid for grades in pool.labelled.qrels.values() for pid in grades}
    unjudged = sorted(p.id for p in pool.labelled.products if p.id not in judged)
    if not unjudged:  # a generated catalog judges every product: take the least relevant ones
        relevance = Counter(
            pid for grades in pool.labelled.qrels.values() for pid, g in grades.items() if g > 0
        )
        ids = [p.id for p in pool.labelled.products]
        unjudged = sorted(ids, key=lambda pid: (relevance[pid], pid))[:50]
    target = random.Random(cfg.seed).choice(unjudged)
    trials: list[Trial] = []
    cases: list[BotMix | None] = [None] + [
        BotMix(share=share, strategy=strategy, target=target, addresses=cfg.bot_addresses)
        for strategy in cfg.strategies
        for share in cfg.shares
    ]
    for mix in cases:
        for n in range(cfg.trials):
            result = one_trial(base, cfg, pool, mix, n, work)
            trials.append(result)
            logger.info("%s", result)
    groups: dict[str, dict[str, Any]] = {}
    for mix in cases:
        name = f"{mix.strategy} {mix.share:.0%}" if mix else "clean"
        rows = [
            t
            for t in trials
            if (t.strategy, t.share) == ((mix.strategy, mix.share) if mix else ("clean", 0.0))
        ]
        deltas = [t.true_delta for t in rows if t.true_delta is not None]
        groups[name] = {
            "trials": len(rows),
            "gate_passed": sum(t.gate == "canary" for t in rows),
            "promoted": sum(t.promoted for t in rows),
            "rolled_back": sum(t.canary == "rollback" for t in rows),
            "false_promotions": sum(t.false_promotion for t in rows),
            "candidates_worse": sum(d <= 0 for d in deltas),
            "mean_true_delta": sum(deltas) / len(deltas) if deltas else None,
            "promoted_mean_true_delta": (
                sum(promoted) / len(promoted)
                if (promoted := [t.true_delta for t in rows if t.promoted and t.true_delta])
                else None
            ),
        }
    return {
        "config": asdict(cfg),
        "dataset": pool.labelled.name,
        "products": len(pool.labelled.products),
        "target": target,
        "cores": os.cpu_count(),
        "groups": groups,
        "trials": [asdict(t) for t in trials],
        "seconds": round(time.perf_counter() - started, 1),
    }


def to_markdown(result: dict[str, Any]) -> str:
    cfg = result["config"]
    lines = [
        f"# Poisoning trials: {result['dataset']} ({result['products']:,} products, "
        f"{result['cores']} cores, {result['seconds']:.0f} s)",
        "",
        f"Each trial: {cfg['sessions']:,} sessions of feedback, retrain on "
        f"{cfg['train_examples']} pairs, gate, then a canary on "
        f"{cfg['canary_fraction']:.0%} of the sessions judged every "
        f"{cfg['look_sessions']} sessions (at most {cfg['max_looks']} looks); bots from "
        f"{cfg['bot_addresses']} addresses.",
        "",
        "| traffic | trials | gate passed | promoted | rolled back | false promotions | "
        "candidates truly worse | mean true Δ of candidates | mean true Δ of promoted |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, g in result["groups"].items():
        mean = _signed(g["mean_true_delta"])
        lines.append(
            f"| {name} | {g['trials']} | {g['gate_passed']} | {g['promoted']} | "
            f"{g['rolled_back']} | **{g['false_promotions']}** | {g['candidates_worse']} | "
            f"{mean} | {_signed(g['promoted_mean_true_delta'])} |"
        )
    return "\n".join(lines) + "\n"


def _signed(value: float | None) -> str:
    return "–" if value is None else f"{value:+.4f}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.poisoning", description=__doc__)
    d = Config()
    parser.add_argument("--dataset", default=None)
    parser.add_argument("--products", type=int, default=d.products)
    parser.add_argument("--trials", type=int, default=d.trials)
    parser.add_argument("--shares", default=",".join(str(s) for s in d.shares))
    parser.add_argument("--strategies", default=",".join(d.strategies))
    parser.add_argument("--sessions", type=int, default=d.sessions)
    parser.add_argument("--train-examples", type=int, default=d.train_examples)
    parser.add_argument("--look-sessions", type=int, default=d.look_sessions)
    parser.add_argument("--max-looks", type=int, default=d.max_looks)
    parser.add_argument("--quick", action="store_true", help="generated catalog, 1 trial each")
    parser.add_argument("--out", type=Path, default=Path("reports/poisoning"))
    args = parser.parse_args(argv)
    wanted = set(args.strategies.split(","))
    strategies = tuple(s for s in STRATEGIES if s in wanted)
    cfg = Config(
        dataset="generated" if args.quick else args.dataset,
        products=400 if args.quick else args.products,
        trials=1 if args.quick else args.trials,
        shares=tuple(float(s) for s in args.shares.split(",")),
        strategies=strategies,
        sessions=400 if args.quick else args.sessions,
        look_sessions=150 if args.quick else args.look_sessions,
        max_looks=2 if args.quick else args.max_looks,
        train_examples=64 if args.quick else args.train_examples,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=[
            logging.StreamHandler(sys.stderr),
            logging.FileHandler(args.out / "poisoning.log", "w"),
        ],
    )
    work = Path(tempfile.mkdtemp(prefix="flywheel-poisoning-"))
    try:
        result = run(cfg, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    (args.out / "poisoning.json").write_text(json.dumps(result, indent=2) + "\n")
    markdown = to_markdown(result)
    (args.out / "poisoning.md").write_text(markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
