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

from services.datasets.base import LabelledSet
from services.datasets.loader import load_dataset
from services.datasets.protocol import in_hash_split
from services.errors import DatasetError
from services.settings import SimulatorSettings
from services.synthetic import generate_catalog, generate_labelled_set

logger = logging.getLogger(__name__)

SPLIT_SALT = "simulator:"
"""Salt of the shoppers' held-out split (independent of the retrainer's gate split)."""


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
        for qid in sorted(labelled.queries):
            grades = labelled.qrels.get(qid)
            if not grades or max(grades.values()) <= 0:
                continue  # nothing to find: no shopper would reward any result
            intent = Intent(qid, labelled.queries[qid], dict(grades))
            side = in_hash_split(intent.text, holdout_fraction, salt=SPLIT_SALT)
            (heldout if side else train).append(intent)
        if not train:
            raise DatasetError(
                f"{labelled.name}: no query with a relevant product is left for shoppers "
                f"(holdout_fraction={holdout_fraction}); lower the held-out fraction."
            )
        self.train = train
        self.heldout = heldout

    def draw(self, rng: random.Random) -> Intent:
        """A training-split intent, uniformly."""
        return rng.choice(self.train)


def load_intents(cfg: SimulatorSettings, *, products: int = 2000) -> IntentPool:
    """The configured labelled set; Home Depot when found; else a generated catalog."""
    if cfg.dataset:
        labelled = load_dataset(cfg.dataset)
    else:
        try:
            labelled = load_dataset("homedepot")
        except DatasetError as exc:
            logger.info("Home Depot data not found (%s); using a generated catalog", exc)
            labelled = generate_labelled_set(generate_catalog(products))
    return IntentPool(labelled, cfg.holdout_fraction)
