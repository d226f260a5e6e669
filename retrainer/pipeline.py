"""One retraining run: snapshot → pairs → fine-tune → register → index → gate → publish.

A crash at any step leaves the registry valid and production untouched: the candidate
becomes a version only once fully written (staging + rename), it can serve only once its index
is recorded complete, pointers change last, atomically, and a rejected candidate's index is
dropped at once (``retrain.drop_rejected_index``, on by default).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from retrainer.catalog_guard import known_item_set
from retrainer.data import FeedbackData, load_feedback
from retrainer.gate import CANDIDATE, PRODUCTION, REFERENCE, decide, guard_checks, heldout_check
from retrainer.guard import guard_evidence
from retrainer.negatives import mine_hard_negatives
from retrainer.report import write_report
from retrainer.scratch import readable_index
from retrainer.training import TrainingExample, train_splade
from services.cards import DataWindow
from services.catalog_store import load_products
from services.decisions import CanaryDecision, GateDecision, append_canary_decision
from services.encoding.base import SpladeEncoder
from services.encoding.package import register_model
from services.encoding.torch_splade import load_mlm
from services.encoding.versions import onnx_encoder
from services.errors import FlywheelError, PointersChangedError, RegistryError
from services.evaluation.heldout import HeldOutEvaluator, HeldOutSet
from services.evaluation.report import EvalReport
from services.index.base import ProductIndex
from services.index.store import opened_store
from services.indexing import index_products
from services.metrics import (
    GATE_DECISIONS,
    OFFLINE_NDCG,
    RETRAIN_LAST_SUCCESS,
    RETRAIN_RUNS,
    RETRAIN_SECONDS,
)
from services.products import Product
from services.registry import Expected, ModelRegistry, Pointers, atomic_write_text
from services.settings import Settings
from services.snapshots import Snapshot

logger = logging.getLogger(__name__)

Stage = Callable[[str], None]
Status = Literal["skipped", "rejected", "canary", "production"]


@dataclass(frozen=True, slots=True)
class RetrainOutcome:
    """How a run ended."""

    status: Status
    message: str
    candidate: str | None = None
    decision: GateDecision | None = None
    report: Path | None = None


@contextmanager
def exclusive_run(registry: ModelRegistry) -> Iterator[None]:
    """One retrainer at a time per registry (the CronJob also says concurrencyPolicy: Forbid)."""
    registry.root.mkdir(parents=True, exist_ok=True)
    with (registry.root / ".retrain.lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RegistryError(
                f"another retrainer is running on {registry.root}; wait for it to finish."
            ) from None
        # Staging folders left by a killed run are invisible; remove them now that we own it.
        shutil.rmtree(registry.staging_dir, ignore_errors=True)
        yield


def _since(registry: ModelRegistry, version: str) -> datetime | None:
    return DataWindow.of(registry.card(version).training).last


def _examples(
    settings: Settings, data: FeedbackData, mined: list[TrainingExample]
) -> list[TrainingExample]:
    examples = data.examples + mined
    spec = settings.retrain.bootstrap_dataset
    if spec and settings.retrain.bootstrap_examples:
        from retrainer.bootstrap import labelled_examples
        from services.datasets.loader import load_dataset

        labelled = [load_dataset(s.strip()) for s in spec.split(",") if s.strip()]
        examples += labelled_examples(
            labelled,
            max_examples=settings.retrain.bootstrap_examples,
            seed=settings.train.seed,
            exclude_queries=set(data.heldout_queries.values()),
        )
    return examples


LAST_SUCCESS_FILE = "retrain_last_success"
"""In the registry: when a retraining run last ended without error (seconds since the epoch)."""


def run_retrain(settings: Settings, *, stage: Stage | None = None) -> RetrainOutcome:
    """Retrain once; returns why it stopped, or the gate's decision and the rollout taken."""
    registry = ModelRegistry(settings.registry_dir)
    started = time.perf_counter()
    last_success = registry.root / LAST_SUCCESS_FILE
    with contextlib.suppress(OSError, ValueError):
        # A one-shot run (a CronJob pushing its metrics) is a fresh process: without this its
        # pushed last-success time would be 0, and failing runs would never look stale.
        RETRAIN_LAST_SUCCESS.set(float(last_success.read_text(encoding="utf-8")))
    try:
        with exclusive_run(registry):
            outcome = _run(settings, registry, stage or (lambda _s: None))
            with opened_store(settings) as store:
                deleted = registry.garbage_collect(
                    settings.retrain.keep_versions,
                    store.drop,
                    actor="retrainer",
                    protect=[reference_version(settings, registry)],
                )
            if deleted:
                logger.info("deleted old versions %s", ", ".join(deleted))
    except FlywheelError:
        RETRAIN_RUNS.labels(outcome="failed").inc()
        raise
    RETRAIN_RUNS.labels(outcome=outcome.status).inc()
    now = time.time()
    RETRAIN_LAST_SUCCESS.set(now)
    atomic_write_text(last_success, f"{now:.3f}\n")
    RETRAIN_SECONDS.labels(stage="total").observe(time.perf_counter() - started)
    logger.info("retrain %s: %s", outcome.status, outcome.message)
    return outcome


@contextmanager
def _timed(name: str, stage: Stage) -> Iterator[None]:
    """Announce a stage and record its duration."""
    stage(name)
    started = time.perf_counter()
    yield
    RETRAIN_SECONDS.labels(stage=name).observe(time.perf_counter() - started)


def _run(settings: Settings, registry: ModelRegistry, stage: Stage) -> RetrainOutcome:
    cfg = settings.retrain
    parent = registry.pointers().production
    if parent is None:
        raise RegistryError("No production model yet; run `flywheel index --catalog FILE` first.")
    snapshot = Snapshot.latest(settings.exports_dir)
    if snapshot is None:
        return RetrainOutcome(
            "skipped",
            "no snapshot yet: run `flywheel ingest` (it snapshots "
            "on an interval) or `flywheel snapshot`",
        )
    products = load_products(settings.catalog_dir)
    texts = {p.id: p.text for p in products}
    with _timed("data", stage):
        data = load_feedback(
            snapshot, texts, heldout_fraction=cfg.heldout_fraction, since=_since(registry, parent)
        )
    if data.new_pairs < cfg.min_new_pairs:
        return RetrainOutcome(
            "skipped",
            f"only {data.new_pairs} new training pairs since {parent} (minimum "
            f"{cfg.min_new_pairs}); production {parent} stays",
        )
    settings.reports_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="retrain-", dir=settings.home) as tmp:
        scratch = Path(tmp)
        production = onnx_encoder(registry, parent, threads=settings.encoder.threads)
        prod_index = readable_index(settings, parent, scratch)
        try:
            with _timed("mine", stage):
                mined = mine_hard_negatives(
                    prod_index,
                    production,
                    data.train_queries,
                    texts,
                    per_query=cfg.hard_negatives_per_query,
                )
            examples = _examples(settings, data, mined)
            with _timed("train", stage):
                for name in registry.card(parent).files:  # train only from untampered weights
                    registry.verified_file(parent, name)
                result = train_splade(
                    registry.path(parent), examples, scratch / "model", settings.train
                )
            with _timed("register", stage):
                model, tokenizer = load_mlm(str(scratch / "model"))
                card = register_model(
                    registry,
                    model,
                    tokenizer,
                    source=f"retrain:{data.snapshot}",
                    encoder=settings.encoder,
                    parent=parent,
                    training={
                        "snapshot": data.snapshot,
                        "data_window": data.window.model_dump(mode="json"),
                        "pairs": {
                            "feedback": len(data.examples),
                            "new": data.new_pairs,
                            "hard_negatives": len(mined),
                            "bootstrap": len(examples) - len(data.examples) - len(mined),
                        },
                        "heldout_queries": len(data.heldout_qrels),
                        "hyperparameters": settings.train.model_dump(),
                        "result": {
                            "device": result.device,
                            "steps": result.steps,
                            "seconds": round(result.seconds, 1),
                            "final_loss": result.final_loss,
                        },
                    },
                )
            candidate = onnx_encoder(registry, card.version, threads=settings.encoder.threads)
            with _timed("index", stage):
                cand_index = index_products(settings, card.version, products)
            ref = reference_version(settings, registry)
            if ref is None and settings.retrain.reference_version:
                logger.warning(
                    "reference version %s is not in the registry: the gate runs without its "
                    "reference check; set FLYWHEEL_RETRAIN__REFERENCE_VERSION to a kept version",
                    settings.retrain.reference_version,
                )
            ref_index = None
            try:
                reference = None
                if ref is not None and ref != parent:
                    ref_index = readable_index(settings, ref, scratch)
                    encoder = onnx_encoder(registry, ref, threads=settings.encoder.threads)
                    reference = (ref, encoder, ref_index)
                with _timed("gate", stage):
                    decision, heldout = _gate(
                        settings,
                        data,
                        scratch,
                        (parent, production, prod_index),
                        (card.version, candidate, cand_index),
                        reference,
                        products,
                    )
            finally:
                cand_index.close()
                if ref_index is not None:
                    ref_index.close()
        finally:
            prod_index.close()
    return publish_candidate(settings, registry, decision, heldout)


def _supersede_canary(
    settings: Settings, registry_dir: Path, replaced: Pointers, newer: str
) -> None:
    """A canary still undecided when a newer candidate passed the gate gave way to it (the
    newer one learnt from more feedback); the log says so."""
    append_canary_decision(
        registry_dir,
        CanaryDecision(
            decision="rollback",
            reason=f"superseded by {newer}, a newer candidate that passed the gate",
            production_version=replaced.production,
            canary_version=replaced.canary,
            policy=settings.retrain.canary,
        ),
    )
    logger.info("canary %s superseded by %s", replaced.canary, newer)


def reference_version(settings: Settings, registry: ModelRegistry) -> str | None:
    """The fixed version every candidate is also compared with: the configured one, else the
    oldest registered version (the first production); None when it is gone."""
    wanted = settings.retrain.reference_version
    versions = registry.versions()
    if wanted:
        return wanted if wanted in versions else None
    return versions[0] if versions else None


def _gate(
    settings: Settings,
    data: FeedbackData,
    scratch: Path,
    production: tuple[str, SpladeEncoder, ProductIndex],
    candidate: tuple[str, SpladeEncoder, ProductIndex],
    reference: tuple[str, SpladeEncoder, ProductIndex] | None,
    catalog: Sequence[Product],
) -> tuple[GateDecision, EvalReport | None]:
    policy = settings.retrain.gate
    mode = settings.search.default_mode
    models = {PRODUCTION: production, CANDIDATE: candidate}
    if reference is not None:
        models[REFERENCE] = reference
    encoders = {version: encoder for version, encoder, _ in models.values()}
    indexes = {version: index for version, _, index in models.values()}
    heldout = None
    if data.heldout_qrels:
        evaluator = HeldOutEvaluator(
            HeldOutSet(f"heldout:{data.snapshot}", data.heldout_queries, data.heldout_qrels),
            encoder=encoders.__getitem__,
            open_index=lambda version: nullcontext(indexes[version]),
            fusion=settings.search.hybrid_fusion(),
        )
        heldout = evaluator.report(
            {role: (models[role][0], mode) for role in models},
            baseline=PRODUCTION,
            judged_only=policy.judged_only,
        )
    checks = [heldout_check(heldout, policy, production=production[0], candidate=candidate[0])]
    # Without labels: known-item queries from the catalog's titles (README, "Gate").
    guard, evidence = guard_evidence(
        settings,
        scratch,
        models,
        lambda: known_item_set(catalog, at_most=settings.retrain.guard_queries),
        baseline=PRODUCTION,
        catalog_evidence="catalog guard: known-item queries from product titles (no labels "
        "configured)",
        exclude_texts=data.heldout_queries.values(),
    )
    checks += guard_checks(
        guard,
        policy,
        evidence=evidence,
        production=production[0],
        candidate=candidate[0],
        reference=reference[0] if reference is not None else None,
    )
    decision = decide(
        checks,
        policy,
        production=production[0],
        candidate=candidate[0],
        reference=reference[0] if reference else None,
        heldout=heldout,
    )
    return decision, heldout


def publish_candidate(
    settings: Settings,
    registry: ModelRegistry,
    decision: GateDecision,
    heldout: EvalReport | None,
) -> RetrainOutcome:
    """Record the decision in the card, the report and metrics; then move pointers."""
    version = decision.candidate
    registry.record_gate(version, decision)
    report = write_report(decision, settings.reports_dir)
    GATE_DECISIONS.labels(outcome="passed" if decision.passed else "rejected").inc()
    for check in decision.checks:
        if check.name != "reference":
            OFFLINE_NDCG.labels(model_version=check.control, dataset=check.name).set(
                check.control_value
            )
            OFFLINE_NDCG.labels(model_version=version, dataset=check.name).set(
                check.candidate_value
            )
    if not decision.passed:
        if settings.retrain.drop_rejected_index:
            # A rejected candidate never serves: its index goes now (card and report stay).
            registry.forget_index(version)
            with opened_store(settings) as store:
                store.drop(version)
        return RetrainOutcome("rejected", "; ".join(decision.reasons), version, decision, report)
    fraction = settings.retrain.canary_fraction
    # Roll out only onto the production the candidate was gated against (compare-and-swap):
    # the canary controller may have promoted or stopped a canary during the run.
    seen = registry.pointers()
    expect = Expected(decision.production, seen.canary)
    try:
        if fraction > 0:
            registry.set_canary(version, fraction, actor="retrainer", expect=expect)
        else:
            registry.set_production(version, actor="retrainer", expect=expect)
    except PointersChangedError as exc:
        logger.warning("retrain: %s not rolled out: %s", version, exc)
        return RetrainOutcome(
            "skipped",
            f"{version} passed the gate against {decision.production}, which no longer serves "
            f"alone ({exc}); not rolled out, the next run gates against what serves now",
            version,
            decision,
            report,
        )
    if seen.canary is not None and seen.canary != version:
        _supersede_canary(settings, registry.root, seen, version)
    if fraction > 0:
        return RetrainOutcome(
            "canary",
            f"{version} serves {fraction:.0%} of sessions as canary",
            version,
            decision,
            report,
        )
    return RetrainOutcome("production", f"{version} is production", version, decision, report)
