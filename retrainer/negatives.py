"""ANCE-style hard negatives: what the production model ranks high that shoppers did not pick.

Xiong et al., 2021, "Approximate Nearest Neighbor Negative Contrastive Learning for Dense Text
Retrieval": negatives drawn from the current model's own top results teach more than random
ones. The very top ranks are skipped because unjudged products there are often relevant
(false negatives); known positives are always excluded.
"""

from __future__ import annotations

from retrainer.training import TrainingExample
from services.encoding.base import SpladeEncoder
from services.evaluation.runner import rank
from services.index.base import ProductIndex


def mine_hard_negatives(
    index: ProductIndex,
    encoder: SpladeEncoder,
    positives: dict[str, set[str]],
    texts: dict[str, str],
    *,
    per_query: int,
    skip_top: int = 2,
    depth: int = 30,
) -> list[TrainingExample]:
    """For each query, pair every known positive with ``per_query`` mined negatives."""
    if per_query == 0 or not positives:
        return []
    queries = sorted(positives)
    examples: list[TrainingExample] = []
    results = rank(index, encoder, queries, mode="splade", limit=depth)
    for query, hits in zip(queries, results, strict=True):
        known = positives[query]
        mined = [
            h.product_id
            for h in hits[skip_top:]
            if h.product_id not in known and h.product_id in texts
        ][:per_query]
        examples.extend(
            TrainingExample(query, texts[pos], texts[neg])
            for pos in sorted(known)
            if pos in texts
            for neg in mined
        )
    return examples
