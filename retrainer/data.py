"""Training and held-out data from a Parquet snapshot (the retrainer never reads DuckDB).

Held-out queries are chosen by a hash of the normalised query text, so a query is held out in
every run or in none: no held-out query is ever trained on, and the gate always judges the
candidate on queries it has not seen.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from retrainer.training import TrainingExample
from services.cards import DataWindow
from services.datasets.base import Qrels
from services.datasets.protocol import in_hash_split, query_id
from services.snapshots import Snapshot

logger = logging.getLogger(__name__)


def is_heldout(norm_query: str, fraction: float) -> bool:
    """Whether a normalised query belongs to the held-out split (stable across runs)."""
    return in_hash_split(norm_query, fraction)


@dataclass(slots=True)
class FeedbackData:
    """What one snapshot offers the retrainer."""

    snapshot: str
    examples: list[TrainingExample]
    train_queries: dict[str, set[str]]
    """norm_query -> products judged relevant (grade >= 1), train split only."""
    heldout_queries: dict[str, str]
    """query id -> normalised query text, held-out split."""
    heldout_qrels: Qrels
    new_pairs: int
    window: DataWindow = field(default_factory=DataWindow)


def load_feedback(
    snapshot: Snapshot,
    texts: dict[str, str],
    *,
    heldout_fraction: float,
    since: datetime | None = None,
) -> FeedbackData:
    """Click-derived training pairs (train split) and graded judgments (held-out split).

    ``texts`` maps product id to the text the encoder sees; pairs naming unknown products are
    dropped. ``since`` (the parent model's data window end) decides which pairs are new.
    """
    judged = snapshot.judgments()
    first, last = snapshot.query_window()
    fresh = {j.norm_query for j in judged if since is None or (j.last_ts and j.last_ts > since)}
    examples: list[TrainingExample] = []
    new_pairs = 0
    for pair in snapshot.training_pairs():
        query, pos, neg = pair.norm_query, pair.positive_id, pair.negative_id
        if is_heldout(query, heldout_fraction) or pos not in texts or neg not in texts:
            continue
        examples.append(TrainingExample(query, texts[pos], texts[neg], pair.weight))
        new_pairs += query in fresh
    train_queries: dict[str, set[str]] = {}
    heldout_qrels: Qrels = {}
    heldout_queries: dict[str, str] = {}
    for judgment in judged:
        query = judgment.norm_query
        if not is_heldout(query, heldout_fraction):
            if judgment.grade >= 1:
                train_queries.setdefault(query, set()).add(judgment.product_id)
            continue
        qid = query_id(query)
        heldout_queries[qid] = query
        heldout_qrels.setdefault(qid, {})[judgment.product_id] = judgment.grade
    # A held-out query with no relevant product cannot move nDCG; leave it out.
    for qid in [q for q, rels in heldout_qrels.items() if max(rels.values()) < 1]:
        del heldout_qrels[qid], heldout_queries[qid]
    logger.info(
        "snapshot %s: %d training pairs (%d new), %d held-out queries",
        snapshot.name,
        len(examples),
        new_pairs,
        len(heldout_qrels),
    )
    return FeedbackData(
        snapshot=snapshot.name,
        examples=examples,
        train_queries=train_queries,
        heldout_queries=heldout_queries,
        heldout_qrels=heldout_qrels,
        new_pairs=new_pairs,
        window=DataWindow(first=first, last=last),
    )
