"""Training and held-out data from a Parquet snapshot (the retrainer never reads DuckDB).

Held-out queries are chosen by a hash of the normalised query text, so a query is held out in
every run or in none: no held-out query is ever trained on, and the gate always judges the
candidate on queries it has not seen.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

from retrainer.training import TrainingExample
from services.datasets.base import Qrels
from services.datasets.protocol import in_hash_split, query_id

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
    window: dict[str, Any] = field(default_factory=dict)


def _read(snapshot: Path, sql: str, params: list[object] | None = None) -> list[tuple[Any, ...]]:
    con = duckdb.connect()
    try:
        con.execute(f"SET file_search_path = '{str(snapshot).replace(chr(39), chr(39) * 2)}'")
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def load_feedback(
    snapshot: Path,
    texts: dict[str, str],
    *,
    heldout_fraction: float,
    since: datetime | None = None,
) -> FeedbackData:
    """Click-derived training pairs (train split) and graded judgments (held-out split).

    ``texts`` maps product id to the text the encoder sees; pairs naming unknown products are
    dropped. ``since`` (the parent model's data window end) decides which pairs are new.
    """
    pairs = _read(
        snapshot,
        "SELECT norm_query, positive_id, negative_id, grade, weight FROM 'training_pairs.parquet'",
    )
    judged = _read(
        snapshot,
        "SELECT norm_query, product_id, max(grade), max(ts) FROM 'judgments.parquet' GROUP BY ALL",
    )
    window = _read(snapshot, "SELECT min(ts), max(ts) FROM 'queries.parquet'")[0]
    fresh = {q for q, _, _, ts in judged if since is None or (ts is not None and ts > since)}
    examples: list[TrainingExample] = []
    new_pairs = 0
    for norm_query, pos, neg, _grade, weight in pairs:
        if is_heldout(norm_query, heldout_fraction) or pos not in texts or neg not in texts:
            continue
        examples.append(TrainingExample(norm_query, texts[pos], texts[neg], float(weight)))
        new_pairs += norm_query in fresh
    train_queries: dict[str, set[str]] = {}
    heldout_qrels: Qrels = {}
    heldout_queries: dict[str, str] = {}
    for norm_query, product, grade, _ts in judged:
        if not is_heldout(norm_query, heldout_fraction):
            if grade >= 1:
                train_queries.setdefault(norm_query, set()).add(product)
            continue
        qid = query_id(norm_query)
        heldout_queries[qid] = norm_query
        heldout_qrels.setdefault(qid, {})[product] = int(grade)
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
        window={"first": str(window[0]), "last": str(window[1])},
    )
