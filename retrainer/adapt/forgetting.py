"""The forgetting check: does the adapted model still rank a catalog it was not adapted to?

Fine-tuning on one corpus can cost a model what it knew of others (catastrophic forgetting,
McCloskey & Cohen, 1989); GPL (Wang et al., 2022) and Promptagator report zero-shot losses on
corpora other than the adapted one. ``flywheel adapt`` keeps the model close to its parent (a
low learning rate, one pass) and measures what is left of the loss here: production and the
adapted candidate each index a labelled set outside the catalog with their own encoder (the
consistency rule) and rank its queries in the serving mode, with
:func:`retrainer.guard.guard_report` (the labelled guard set's own evaluation); the gate's
``forgetting`` check allows the guard's drop (``gate.max_guard_drop`` of nDCG@10).

The default set is out of domain and built offline: Python's standard-library reference
documentation (:mod:`services.datasets.pydocs`: a docstring's one-line summary finds the
documentation of its function or class), a sample of ``adapt.forgetting_products`` documents
holding at most ``retrain.guard_queries`` known-item queries (and at most half as many as
documents). Software reference text shares little with
product titles, so it shows whether adapting cost the model its general English retrieval.
A labelled set of another shop (``adapt.forgetting_dataset``: ``esci:DIR``, ``wands:DIR``,
``qrels:DIR``) checks it on graded product judgments instead. The same comparison outside the
gate: ``flywheel eval --dataset pydocs --model vN`` for each version.
"""

from __future__ import annotations

from pathlib import Path

from retrainer.gate import CANDIDATE, PRODUCTION, drop_check
from retrainer.guard import guard_report
from services.datasets.pydocs import load_pydocs
from services.decisions import GateCheck
from services.encoding.base import SpladeEncoder
from services.evaluation.report import EvalReport
from services.settings import Settings
from services.simulator.intents import subsample
from services.synthetic import write_qrels_dataset

FORGETTING_SEED = 2024
"""Seed of the default set's sample."""
PYDOCS_EVIDENCE = "standard-library documentation, known-item queries (out of domain)"


def forgetting_spec(settings: Settings, scratch: Path) -> tuple[str, str]:
    """(labelled set spec, what it is): ``adapt.forgetting_dataset``, else a sample of the
    standard-library documentation set written under ``scratch`` in the ``qrels:DIR`` layout."""
    cfg = settings.adapt
    if cfg.forgetting_dataset:
        return cfg.forgetting_dataset, f"labelled set {cfg.forgetting_dataset}"
    docs = load_pydocs()
    # Whole known-item queries for half the documents, distractors for the rest; the guard's
    # own draw then takes at most retrain.guard_queries of them.
    sample = subsample(docs, cfg.forgetting_products, seed=FORGETTING_SEED)
    folder = write_qrels_dataset(sample, scratch / "forgetting-set")
    return f"qrels:{folder}", f"{PYDOCS_EVIDENCE} (Python {docs.notes['python']})"


def forgetting_check(
    settings: Settings,
    scratch: Path,
    production: tuple[str, SpladeEncoder],
    candidate: tuple[str, SpladeEncoder],
) -> tuple[GateCheck, EvalReport]:
    """nDCG@10 of production and candidate (version, encoder) on the set outside the catalog,
    as a gate check named ``forgetting``, and the report it was read from."""
    spec, evidence = forgetting_spec(settings, scratch)
    report = guard_report(
        settings,
        spec,
        scratch / "forgetting",
        {PRODUCTION: production, CANDIDATE: candidate},
        baseline=PRODUCTION,
        min_judged=1,  # known-item queries judge one document
    )
    check = drop_check(
        report,
        settings.retrain.gate,
        name="forgetting",
        evidence=f"forgetting: {evidence}",
        control_system=PRODUCTION,
        control=production[0],
        candidate=candidate[0],
    )
    return check, report
