"""What simulated shoppers look for: the queries of a labelled set with their graded judgments.

With the Home Depot data present (``../shared/data`` or ``$FLYWHEEL_DATA_DIR``) the shoppers
use its queries and human grades; without it, a generated catalog with graded relevance, so the
demo runs anywhere. A hash of the query text keeps a fraction of the queries away from the
shoppers: they measure the models on labels the flywheel never learnt from.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from services.datasets.base import LabelledSet
from services.datasets.loader import load_dataset
from services.datasets.protocol import MIN_JUDGED, in_hash_split
from services.errors import DatasetError
from services.settings import SimulatorSettings
from services.synthetic import generate_catalog, generate_labelled_set

if TYPE_CHECKING:  # evaluation needs the [eval] extras, which the serving image lacks
    from services.evaluation.heldout import HeldOutSet

logger = logging.getLogger(__name__)

SPLIT_SALT = "simulator:"
"""Salt of the shoppers' held-out split (independent of the retrainer's gate split)."""


GENERATED = "generated"
"""``simulator.dataset`` value that asks for the generated catalog even when data is found."""


@dataclass(frozen=True, slots=True)
class Intent:
    """A query a shopper types and the true grades of products for it."""

    query_id: str
    text: str
    grades: dict[str, int]


class IntentPool:
    """The labelled queries split into those shoppers issue (train) and held-out ones."""

    def __init__(self, labelled: LabelledSet, holdout_fraction: float) -> None:
        self.labelled = labelled
        self.max_grade = labelled.max_grade
        train: list[Intent] = []
        heldout: list[Intent] = []
        heldout_ids: list[str] = []
        for qid in sorted(labelled.queries):
            side = in_hash_split(labelled.queries[qid], holdout_fraction, salt=SPLIT_SALT)
            if side:
                heldout_ids.append(qid)
            grades = labelled.qrels.get(qid)
            if not grades or max(grades.values()) <= 0:
                continue  # nothing to find: no shopper would reward any result
            intent = Intent(qid, labelled.queries[qid], dict(grades))
            (heldout if side else train).append(intent)
        if not train:
            raise DatasetError(
                f"{labelled.name}: no query with a relevant product is left for shoppers "
                f"(holdout_fraction={holdout_fraction}); lower the held-out fraction."
            )
        self.train = train
        self.heldout = heldout
        self.heldout_ids = heldout_ids
        """Every query on the held-out side, a relevant product or not (the test draw's
        universe, as in the reference protocol)."""

    def test_set(self, at_most: int, *, min_judged: int = MIN_JUDGED, seed: int = 42) -> HeldOutSet:
        """Up to ``at_most`` held-out queries with their human grades, drawn by the reference
        protocol (:func:`~services.datasets.protocol.sample_queries`): what the demo and the
        benchmarks measure every version on. No shopper ever issues one of them.

        Raises:
            DatasetError: no held-out query has ``min_judged`` judged products.
        """
        from services.evaluation.heldout import HeldOutSet

        return HeldOutSet.sample(
            self.labelled,
            among=self.heldout_ids,
            at_most=at_most,
            min_judged=min_judged,
            min_grade=0,
            seed=seed,
        )

    def draw(self, rng: random.Random) -> Intent:
        """A training-split intent, uniformly."""
        return rng.choice(self.train)


def load_intents(cfg: SimulatorSettings, *, products: int = 2000) -> IntentPool:
    """The configured labelled set, or Home Depot when found, or a generated catalog; a
    labelled set larger than ``products`` is subsampled to it (see :func:`subsample`)."""
    if cfg.dataset == GENERATED:
        labelled = generate_labelled_set(generate_catalog(products))
    elif cfg.dataset:
        labelled = load_dataset(cfg.dataset)
    else:
        try:
            labelled = load_dataset("homedepot")
        except DatasetError as exc:
            logger.info("Home Depot data not found (%s); using a generated catalog", exc)
            labelled = generate_labelled_set(generate_catalog(products))
    return IntentPool(subsample(labelled, products, seed=cfg.seed), cfg.holdout_fraction)


def subsample(labelled: LabelledSet, max_products: int, *, seed: int = 42) -> LabelledSet:
    """A smaller set with the same structure: whole queries (every judged product kept) until
    half of ``max_products`` is judged, the rest random unjudged distractors. Lets the demo run
    a large catalog such as Home Depot's in minutes on a laptop."""
    if len(labelled.products) <= max_products:
        return labelled
    rng = random.Random(seed)
    qids = sorted(q for q in labelled.queries if labelled.qrels.get(q))
    rng.shuffle(qids)
    judged: set[str] = set()
    kept: list[str] = []
    for qid in qids:
        products = set(labelled.qrels[qid])
        if len(judged | products) > max_products // 2:
            break
        judged |= products
        kept.append(qid)
    others = sorted(p.id for p in labelled.products if p.id not in judged)
    keep = judged | set(rng.sample(others, min(len(others), max_products - len(judged))))
    return LabelledSet(
        name=f"{labelled.name}[{max_products}]",
        products=[p for p in labelled.products if p.id in keep],
        queries={q: labelled.queries[q] for q in kept},
        qrels={q: labelled.qrels[q] for q in kept},
        max_grade=labelled.max_grade,
        notes=labelled.notes,
    )
