"""One adaptation run: catalog → generated queries → mined negatives → fine-tune → register →
index → gate → canary (or production).

Unsupervised domain adaptation in the manner of GPL (Wang et al., 2022) and InPars /
Promptagator: with no labels and no traffic, the catalog supplies both the queries
(:mod:`retrainer.adapt.queries`, or an LLM: :mod:`retrainer.adapt.llm`) and the negatives
(:mod:`retrainer.adapt.negatives`). The candidate is then treated like any other: registered
with its card (source ``adapt:catalog``), indexed, gated against production, and rolled out
the way the retrainer rolls out (:func:`retrainer.pipeline.publish_candidate`).

The gate is the retrainer's when it has no click-judged queries: the catalog guard
(known-item queries from titles, :func:`retrainer.catalog_guard.known_item_set`), or the
labelled guard set when one is configured, and the fixed reference. Because the generated
queries come from titles too, the guard's products are held out: they are neither positives
nor negatives nor a source of queries, and no generated query equals a guard query, so the
guard measures titles the model was not adapted on. A ``forgetting`` check adds a labelled set
outside the catalog (:mod:`retrainer.adapt.forgetting`).
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retrainer.adapt.forgetting import forgetting_check
from retrainer.adapt.llm import LlmGenerator
from retrainer.adapt.negatives import NegativeMiner
from retrainer.adapt.queries import QueryPair, generate_pairs
from retrainer.catalog_guard import known_item_set
from retrainer.gate import CANDIDATE, PRODUCTION, REFERENCE, decide, guard_checks
from retrainer.guard import guard_evidence
from retrainer.pipeline import (
    Status,
    exclusive_run,
    publish_candidate,
    reference_version,
)
from retrainer.scratch import readable_index
from retrainer.training import TrainingExample, train_splade
from services.catalog_store import load_products
from services.decisions import GateDecision
from services.encoding.base import SpladeEncoder
from services.encoding.package import register_model
from services.encoding.torch_splade import load_mlm
from services.encoding.versions import onnx_encoder
from services.errors import ConfigError
from services.evaluation.heldout import HeldOutSet
from services.index.base import ProductIndex
from services.indexing import bootstrap_home, index_products
from services.products import Product
from services.registry import ModelRegistry
from services.settings import Settings

logger = logging.getLogger(__name__)

AdaptProgress = Callable[[str, int, int], None]
"""Called as ``(stage, done, total)``; stages ``bootstrap``, ``generate``, ``negatives``,
``train``, ``index`` (``total`` 0: unknown) and ``gate`` (no count)."""
SOURCE = "adapt:catalog"
MAX_GUARD_SHARE = 0.2
"""The catalog guard holds out at most this share of a small catalog's products."""
BM25_SYSTEM = "bm25"
Model = tuple[str, SpladeEncoder, ProductIndex]


@dataclass(frozen=True, slots=True)
class AdaptOutcome:
    """How a run ended: the gate's verdict and rollout, the candidate and its training record,
    and nDCG@10 on the catalog guard by system (``bm25``, ``production``, ``candidate``)."""

    status: Status
    message: str
    version: str | None = None
    decision: GateDecision | None = None
    report: Path | None = None
    training: dict[str, Any] = field(default_factory=dict)
    guard: dict[str, float] = field(default_factory=dict)
    queries: frozenset[str] = frozenset()
    """The generated query texts trained on (a benchmark checks them for leakage)."""


def _count(progress: AdaptProgress | None, stage: str, total: int) -> Callable[[int], None]:
    """An ``advance(n)`` callback (what indexing reports) on top of ``progress``."""
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if progress:
            progress(stage, done, total)

    return advance


def _catalog(settings: Settings, products: Sequence[Product] | None) -> list[Product]:
    saved = load_products(settings.catalog_dir)
    if products is not None and {p.id: p.text for p in products} != {p.id: p.text for p in saved}:
        raise ConfigError(
            "This home serves another catalog than the one given. Index it first "
            "(`flywheel index --catalog FILE`), then run `flywheel adapt` without --catalog."
        )
    return saved


def guard_set(settings: Settings, products: Sequence[Product]) -> HeldOutSet:
    """The catalog guard of this run: the retrainer's known-item queries (same seed), at most
    :data:`MAX_GUARD_SHARE` of the products so a small catalog keeps most for training."""
    at_most = min(settings.retrain.guard_queries, max(1, int(len(products) * MAX_GUARD_SHARE)))
    return known_item_set(products, at_most=at_most)


def make_pairs(
    settings: Settings,
    products: Sequence[Product],
    *,
    use_llm: bool,
    exclude_queries: frozenset[str],
    progress: AdaptProgress | None = None,
) -> tuple[list[QueryPair], dict[str, Any]]:
    """Generated (query, product) pairs and what made them (for the card)."""
    cfg = settings.adapt
    if not use_llm:
        pairs = generate_pairs(products, cfg.pairs, seed=cfg.seed, exclude_queries=exclude_queries)
        if progress:
            progress("generate", len(pairs), len(pairs))
        return pairs, {"generator": "offline"}
    generator = LlmGenerator(cfg)
    try:
        pairs = generator.generate(
            products,
            cfg.pairs,
            exclude_queries=exclude_queries,
            progress=(lambda d, t: progress("generate", d, t)) if progress else None,
        )
    finally:
        generator.close()
    return pairs, {
        "generator": f"llm:{cfg.llm_model or 'default'}",
        "llm": generator.stats.as_dict(),
    }


def build_examples(
    settings: Settings,
    products: Sequence[Product],
    pairs: Sequence[QueryPair],
    progress: AdaptProgress | None,
) -> tuple[list[TrainingExample], dict[str, Any]]:
    """One triple per pair and negative (:class:`NegativeMiner` over ``products``)."""
    cfg = settings.adapt
    miner = NegativeMiner(
        products, depth=cfg.negative_depth, margin=cfg.negative_margin, seed=cfg.seed
    )
    triples, stats = miner.mine(
        pairs,
        per_query=cfg.negatives_per_query,
        progress=(lambda d, t: progress("negatives", d, t)) if progress else None,
    )
    texts = {p.id: p.text for p in products}
    examples = [
        TrainingExample(t.query, texts[t.positive_id], texts[t.negative_id]) for t in triples
    ]
    record = {
        "bm25": stats.bm25,
        "random": stats.random,
        "none": stats.none,
        "dropped": stats.dropped,
    }
    return examples, record


def gate(
    settings: Settings,
    scratch: Path,
    known: HeldOutSet,
    production: Model,
    candidate: Model,
    reference: Model | None,
) -> tuple[GateDecision, dict[str, float]]:
    """Guard, reference and forgetting checks (no held-out clicks exist yet); the decision and
    nDCG@10 on the guard by system."""
    policy = settings.retrain.gate
    models = {PRODUCTION: production, CANDIDATE: candidate}
    if reference is not None:
        models[REFERENCE] = reference
    report, evidence = guard_evidence(
        settings,
        scratch,
        models,
        lambda: known,
        baseline=PRODUCTION,
        catalog_evidence="catalog guard: known-item queries from the titles of products held "
        "out of adaptation",
        extra_systems={BM25_SYSTEM: (models[CANDIDATE][0], "bm25")},
    )
    checks = guard_checks(
        report,
        policy,
        evidence=evidence,
        production=production[0],
        candidate=candidate[0],
        reference=reference[0] if reference is not None else None,
    )
    if settings.adapt.forgetting_check:
        check, _ = forgetting_check(settings, scratch, production[:2], candidate[:2])
        checks.append(check)
    decision = decide(
        checks,
        policy,
        production=production[0],
        candidate=candidate[0],
        reference=reference[0] if reference else None,
    )
    return decision, {s: report.mean(s) for s in report.systems}


def adapt_catalog(
    settings: Settings,
    products: Sequence[Product] | None = None,
    *,
    use_llm: bool | None = None,
    promote: bool = False,
    progress: AdaptProgress | None = None,
    actor: str | None = None,
    exclude_queries: Collection[str] = (),
) -> AdaptOutcome:
    """Adapt production's model to the catalog and roll the result out if the gate passes.

    ``products``: the catalog; on a new home it is indexed first with the bundled model
    (v1 production, :func:`~services.indexing.bootstrap_home`); on a home that serves it must
    be the saved catalog (None: use that). ``use_llm`` None: the LLM generator when
    ``adapt.llm_url`` is set. ``promote``: a passing candidate becomes production at once
    instead of a canary (on a new home there are no shoppers to judge a canary).
    ``exclude_queries``: texts never generated for training (e.g. a benchmark's test queries).

    Raises:
        FlywheelError: no catalog, a catalog other than the one served, an LLM asked for but
            not configured, or a training, registry or index failure.
    """
    wants_llm = bool(settings.adapt.llm_url) if use_llm is None else use_llm
    if wants_llm and not settings.adapt.llm_url:
        raise ConfigError(
            "--llm needs an OpenAI-compatible endpoint: set FLYWHEEL_ADAPT__LLM_URL (and "
            "FLYWHEEL_ADAPT__LLM_MODEL, FLYWHEEL_ADAPT__LLM_API_KEY if it needs them)."
        )
    registry = ModelRegistry(settings.registry_dir)
    with exclusive_run(registry):
        if registry.pointers().production is None:
            if products is None:
                raise ConfigError("A new home needs a catalog: pass --catalog FILE.")
            catalog = list(products)
            bootstrap_home(
                settings, catalog, progress=_count(progress, "bootstrap", len(catalog)), actor=actor
            )
        else:
            catalog = _catalog(settings, products)
        return _run(
            settings, registry, catalog, wants_llm, promote, progress, frozenset(exclude_queries)
        )


def _run(
    settings: Settings,
    registry: ModelRegistry,
    products: list[Product],
    use_llm: bool,
    promote: bool,
    progress: AdaptProgress | None,
    exclude_queries: frozenset[str] = frozenset(),
) -> AdaptOutcome:
    cfg = settings.adapt
    parent = registry.pointers().production
    assert parent is not None
    known = guard_set(settings, products)
    held_out = {pid for judged in known.qrels.values() for pid in judged}
    train_products = [p for p in products if p.id not in held_out]
    started = time.perf_counter()
    pairs, generation = make_pairs(
        settings,
        train_products,
        use_llm=use_llm,
        exclude_queries=known.texts | exclude_queries,
        progress=progress,
    )
    if not pairs:
        raise ConfigError(
            "No queries could be generated from this catalog's titles; check that its text "
            "column holds product titles."
        )
    seconds = {"generate": time.perf_counter() - started}
    started = time.perf_counter()
    examples, negatives = build_examples(settings, train_products, pairs, progress)
    seconds["negatives"] = time.perf_counter() - started
    training: dict[str, Any] = {
        **generation,
        "pairs": {
            "generated": len(pairs),
            "by_kind": dict(Counter(p.kind for p in pairs)),
            "examples": len(examples),
            "negatives": negatives,
        },
        "catalog_products": len(products),
        "heldout_products": len(held_out),
        "seed": cfg.seed,
    }
    settings.reports_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="adapt-", dir=settings.home) as tmp:
        scratch = Path(tmp)
        version = _train_and_register(
            settings, registry, parent, examples, scratch, training, seconds, progress
        )
        decision, guard = _index_and_gate(
            settings, registry, scratch, known, parent, version, products, progress
        )
    rollout = settings
    if promote:
        rollout = settings.model_copy(
            update={"retrain": settings.retrain.model_copy(update={"canary_fraction": 0.0})}
        )
    outcome = publish_candidate(rollout, registry, decision, None)
    logger.info("adapt %s: %s", outcome.status, outcome.message)
    return AdaptOutcome(
        outcome.status,
        outcome.message,
        version,
        decision,
        outcome.report,
        training,
        guard,
        frozenset(p.query for p in pairs),
    )


def _train_and_register(
    settings: Settings,
    registry: ModelRegistry,
    parent: str,
    examples: list[TrainingExample],
    scratch: Path,
    training: dict[str, Any],
    seconds: dict[str, float],
    progress: AdaptProgress | None,
) -> str:
    """Fine-tune production's model gently (``adapt`` learning rate and epochs) and register
    it with ``training`` (completed here) in its card; returns the new version."""
    cfg = settings.adapt
    train_cfg = settings.train.model_copy(
        update={
            "learning_rate": cfg.learning_rate,
            "epochs": cfg.epochs,
            "seed": cfg.seed,
            "max_examples": max(1, len(examples)),
        }
    )
    for name in registry.card(parent).files:  # train only from untampered weights
        registry.verified_file(parent, name)
    if progress:
        steps = math.ceil(cfg.epochs * math.ceil(len(examples) / train_cfg.batch_size))
        progress("train", 0, steps)
    result = train_splade(
        registry.path(parent),
        examples,
        scratch / "model",
        train_cfg,
        progress=(lambda d, t: progress("train", d, t)) if progress else None,
    )
    training["seconds"] = {
        **{k: round(v, 1) for k, v in seconds.items()},
        "train": round(result.seconds, 1),
    }
    training["hyperparameters"] = train_cfg.model_dump()
    training["result"] = {
        "device": result.device,
        "steps": result.steps,
        "seconds": round(result.seconds, 1),
        "final_loss": result.final_loss,
    }
    model, tokenizer = load_mlm(str(scratch / "model"))
    card = register_model(
        registry,
        model,
        tokenizer,
        source=SOURCE,
        encoder=settings.encoder,
        parent=parent,
        training=training,
    )
    return card.version


def _index_and_gate(
    settings: Settings,
    registry: ModelRegistry,
    scratch: Path,
    known: HeldOutSet,
    parent: str,
    version: str,
    products: Sequence[Product],
    progress: AdaptProgress | None,
) -> tuple[GateDecision, dict[str, float]]:
    """Index the catalog with the candidate and gate it against production (and the fixed
    reference, when it is another version), each on its own index."""
    threads = settings.encoder.threads
    cand_index = index_products(
        settings, version, products, progress=_count(progress, "index", len(products))
    )
    opened = [cand_index]
    try:
        prod_index = readable_index(settings, parent, scratch)
        opened.append(prod_index)
        reference = None
        ref = reference_version(settings, registry)
        if ref is not None and ref not in {parent, version}:
            ref_index = readable_index(settings, ref, scratch)
            opened.append(ref_index)
            reference = (ref, onnx_encoder(registry, ref, threads=threads), ref_index)
        if progress:
            progress("gate", 0, 0)
        return gate(
            settings,
            scratch,
            known,
            (parent, onnx_encoder(registry, parent, threads=threads), prod_index),
            (version, onnx_encoder(registry, version, threads=threads), cand_index),
            reference,
        )
    finally:
        for index in opened:
            index.close()
