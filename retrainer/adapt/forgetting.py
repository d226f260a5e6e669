"""The forgetting check: does the adapted model still rank a catalog it was not adapted to?

Fine-tuning on one corpus can cost a model what it knew of others (catastrophic forgetting,
McCloskey & Cohen, 1989); GPL (Wang et al., 2022) and Promptagator report zero-shot losses on
corpora other than the adapted one. ``flywheel adapt`` keeps the model close to its parent (a
low learning rate, one pass) and measures what is left of the loss here: production and the
adapted candidate each index a labelled set outside the catalog with their own encoder (the
consistency rule) and rank its queries in the serving mode, with
:func:`retrainer.guard.guard_report` (the labelled guard set's own evaluation); the gate's
``forgetting`` check allows the guard's drop (``gate.max_guard_drop`` of nDCG@10).

What the default set measures, honestly: a generated catalog (:mod:`services.synthetic`:
templated titles from 16 brands and 60 product types, graded queries such as 'brass door
hinge'), built with a seed of its own. It is a *different catalog*, not a different domain: it
is home improvement too, so for a Home Depot catalog it measures whether the model still ranks
other, unseen titles as well as before, not whether it kept general English. For a real
out-of-domain check set ``adapt.forgetting_dataset`` to a labelled set of another domain
(``esci:DIR``, ``wands:DIR``, ``qrels:DIR``). The same comparison outside the gate:
``flywheel eval --dataset SPEC --model vN`` for each version.
"""

from __future__ import annotations

from pathlib import Path

from retrainer.gate import CANDIDATE, PRODUCTION, drop_check
from retrainer.guard import guard_report
from services.decisions import GateCheck
from services.encoding.base import SpladeEncoder
from services.evaluation.report import EvalReport
from services.settings import Settings
from services.synthetic import generate_catalog, generate_labelled_set, write_qrels_dataset

FORGETTING_SEED = 2024
"""Seed of the generated set: another catalog than the demo's and the tests' defaults."""
GENERATED_EVIDENCE = (
    "generated catalog with graded queries (services.synthetic): another catalog, same broad domain"
)


def forgetting_spec(settings: Settings, scratch: Path) -> tuple[str, str]:
    """(labelled set spec, what it is): ``adapt.forgetting_dataset``, else the generated set
    written under ``scratch`` in the ``qrels:DIR`` layout."""
    cfg = settings.adapt
    if cfg.forgetting_dataset:
        return cfg.forgetting_dataset, f"labelled set {cfg.forgetting_dataset}"
    products = generate_catalog(cfg.forgetting_products, seed=FORGETTING_SEED)
    folder = write_qrels_dataset(generate_labelled_set(products), scratch / "forgetting-set")
    return f"qrels:{folder}", GENERATED_EVIDENCE


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
