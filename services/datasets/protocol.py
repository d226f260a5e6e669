"""Evaluation protocol helpers shared by every labelled set: query ids and query sampling."""

from __future__ import annotations

import hashlib
import random

from services.datasets.base import LabelledSet, Qrels
from services.errors import DatasetError


def normalise_query(text: str) -> str:
    """Lowercase, collapse runs of whitespace to one space and strip."""
    return " ".join(text.lower().split())


def query_id(text: str) -> str:
    """A stable id for a query: the first 16 hex digits of SHA-1 of its normalised text.

    The same text (up to case and whitespace) gets the same id in every run and on every
    machine, so sampled query lists and reports can be compared across runs.
    """
    return hashlib.sha1(normalise_query(text).encode("utf-8")).hexdigest()[:16]


def in_hash_split(text: str, fraction: float, *, salt: str = "") -> bool:
    """Whether a query falls in the ``fraction`` split chosen by hashing its normalised text.

    Stable across runs and machines, so a query is on the same side every time. Different
    ``salt`` values give independent splits (the simulator's held-out queries and the
    retrainer's gate queries must not coincide, or the gate would never see any).
    """
    digest = hashlib.sha256((salt + normalise_query(text)).encode()).digest()
    return int.from_bytes(digest[:8]) / 2**64 < fraction


def add_judgment(qrels: Qrels, qid: str, pid: str, grade: int) -> None:
    """Record a graded judgment; a (query, product) pair judged twice keeps its highest grade."""
    judged = qrels.setdefault(qid, {})
    judged[pid] = max(grade, judged.get(pid, grade))


MIN_JUDGED = 2
"""The reference protocol's eligibility: a test query has at least two judged products."""


def sample_queries(
    ls: LabelledSet,
    n: int | None = None,
    *,
    at_most: int | None = None,
    min_judged: int = MIN_JUDGED,
    seed: int = 42,
) -> list[str]:
    """Pick ``n`` query ids (or ``at_most`` that many) for evaluation, reproducibly.

    Protocol: the eligible queries are those with at least ``min_judged`` judged products in
    ``ls.qrels`` (any grade, 0 included) and a text in ``ls.queries``; their ids are sorted
    as strings and ``random.Random(seed).sample(sorted_ids, n)`` picks the sample (returned
    in sample order). The same set, ``n``, ``min_judged`` and ``seed`` always give the same list.

    Give exactly one of ``n`` (exactly that many) and ``at_most`` (a maximum: every eligible
    query, shuffled by the same draw, when fewer exist). Where enough queries are eligible both
    return the same list, so a report made with either can be reproduced with the other.

    Raises:
        DatasetError: the count is not positive; ``n`` exceeds the eligible queries; or, with
            ``at_most``, no query is eligible.
    """
    if (n is None) == (at_most is None):
        raise DatasetError("sample_queries: give exactly one of n and at_most.")
    eligible = sorted(
        qid for qid, judged in ls.qrels.items() if len(judged) >= min_judged and qid in ls.queries
    )
    if not eligible:
        raise DatasetError(
            f"no query of {ls.name} has at least {min_judged} judged products and a text; "
            "lower min_judged or check the data set's judgments."
        )
    count = n if n is not None else at_most
    assert count is not None
    wanted = count if n is not None else min(count, len(eligible))
    if not 0 < wanted <= len(eligible) or count <= 0:
        asked = f"{n} queries" if n is not None else f"at most {at_most} queries"
        raise DatasetError(
            f"cannot sample {asked} from {ls.name}: {len(eligible)} queries have at least "
            f"{min_judged} judged products; ask for between 1 and {len(eligible)} queries "
            "or lower min_judged."
        )
    return random.Random(seed).sample(eligible, wanted)
