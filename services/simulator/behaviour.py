"""How a simulated shopper reacts to one served list.

Examination follows the position-based model (PBM; Craswell et al., 2008, "An experimental
comparison of click position-bias models"): rank r is looked at with probability
``r ** -decay``, independently of what is there. An examined product is clicked with a
probability that grows with its true relevance grade, the way DCG weighs gains
(``(2**g - 1) / (2**G - 1)``), plus noise on irrelevant and unjudged products. A clicked product
is added to the cart with a probability proportional to its grade, and a carted one is bought
with a fixed probability; a purchase ends the list (the shopper found what they wanted).

Every rendered result is reported as an impression, as a storefront does: the click model in
the ingest has to learn the position bias from impressions and clicks, as it would in production.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from services.events import Action
from services.settings import SimulatorSettings


def searches_in_session(rng: random.Random, mean: float) -> int:
    """How many searches a session makes: geometric with the given mean (at least one)."""
    searches = 1
    while rng.random() > 1 / mean:
        searches += 1
    return searches


@dataclass(frozen=True, slots=True)
class Reaction:
    """One thing a shopper did with a product of the list (``position`` is 1-based)."""

    position: int
    product_id: str
    action: Action


class ShopperBehaviour:
    """Reactions to result lists, given the true grades of the products for the intent."""

    def __init__(self, cfg: SimulatorSettings, max_grade: int) -> None:
        if max_grade < 1:
            raise ValueError(f"max_grade must be >= 1 (got {max_grade}): grades need a top.")
        self.cfg = cfg
        self.max_grade = max_grade

    def examine_probability(self, position: int) -> float:
        """P(the shopper looks at rank ``position``) under the position-based model."""
        return float(position**-self.cfg.examination_decay)

    def click_probability(self, grade: int) -> float:
        """P(click | examined) for a product of this grade (unjudged products count as 0)."""
        g = min(max(grade, 0), self.max_grade)
        gain = (2.0**g - 1) / (2.0**self.max_grade - 1)
        return self.cfg.click_noise + (self.cfg.click_top - self.cfg.click_noise) * gain

    def cart_probability(self, grade: int) -> float:
        """P(add to cart | click)."""
        return self.cfg.cart_rate * min(max(grade, 0), self.max_grade) / self.max_grade

    def react(
        self,
        results: Sequence[str],
        grades: Mapping[str, int],
        rng: random.Random,
        *,
        first_position: int = 1,
    ) -> list[Reaction]:
        """Impressions for every result, then clicks, add-to-carts and purchases."""
        reactions = [
            Reaction(first_position + i, pid, "impression") for i, pid in enumerate(results)
        ]
        for i, pid in enumerate(results):
            position = first_position + i
            if rng.random() >= self.examine_probability(position):
                continue
            grade = grades.get(pid, 0)
            if rng.random() >= self.click_probability(grade):
                continue
            reactions.append(Reaction(position, pid, "click"))
            if rng.random() >= self.cart_probability(grade):
                continue
            reactions.append(Reaction(position, pid, "add_to_cart"))
            if rng.random() < self.cfg.purchase_rate:
                reactions.append(Reaction(position, pid, "purchase"))
                break
        return reactions
