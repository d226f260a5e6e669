"""Training triples from labelled relevance sets (Home Depot, ESCI, WANDS, qrels).

Mixed into retraining runs when ``retrain.bootstrap_dataset`` is set, against catastrophic
forgetting, and usable alone to train a
first model before any shopper feedback exists. Each triple pairs a query with a highly graded
product and a low-graded product *of the same query*: a judged hard negative, which teaches
more than a random one (the in-batch negatives of multiple-negatives ranking, Henderson et al.,
2017, supply the random ones).
"""

from __future__ import annotations

import logging
import math
import random
import tempfile
from collections.abc import Callable, Sequence, Set
from functools import partial
from pathlib import Path
from typing import Any

from retrainer.training import Progress, TrainingExample, TrainResult, train_splade
from services.datasets.base import LabelledSet
from services.datasets.protocol import normalise_query
from services.errors import ConfigError
from services.registry import ModelCard
from services.settings import Settings, TrainSettings

logger = logging.getLogger(__name__)

POSITIVE_SHARE = 0.8
"""Default positives: grade >= ceil(0.8 * max_grade) (Home Depot: >= 5, relevance >= 2.67)."""
NEGATIVE_SHARE = 0.34
"""Default negatives: grade <= floor(0.34 * max_grade) (Home Depot: <= 2, relevance <= 1.67)."""


def grade_cutoffs(
    ls: LabelledSet, pos_min_grade: int | None = None, neg_max_grade: int | None = None
) -> tuple[int, int]:
    """(lowest positive grade, highest negative grade) for ``ls``; explicit values win."""
    pos = pos_min_grade if pos_min_grade is not None else math.ceil(POSITIVE_SHARE * ls.max_grade)
    neg = neg_max_grade if neg_max_grade is not None else math.floor(NEGATIVE_SHARE * ls.max_grade)
    if not neg < pos <= ls.max_grade:
        raise ConfigError(
            f"{ls.name}: positives need grade >= {pos} and negatives <= {neg} on a "
            f"0..{ls.max_grade} scale; choose neg_max_grade < pos_min_grade <= max_grade."
        )
    return pos, neg


def candidate_triples(
    ls: LabelledSet,
    rng: random.Random,
    *,
    exclude: Set[str] = frozenset(),
    pos_min_grade: int | None = None,
    neg_max_grade: int | None = None,
) -> list[TrainingExample]:
    """Every positive judgment of ``ls`` paired with one random negative of the same query.

    Texts are the products' ``text`` (the title in every adapter); queries are normalised.
    A query with no judged negative is skipped: pairing it with a random product would add
    unjudged, possibly relevant, negatives, and in-batch negatives already play that part.
    A negative whose text equals the positive's (another id, same title) is never chosen.
    Queries whose normalised text is in ``exclude`` (held-out or guard queries) are skipped.
    """
    pos_min, neg_max = grade_cutoffs(ls, pos_min_grade, neg_max_grade)
    texts = {p.id: p.text for p in ls.products if p.text}
    out: list[TrainingExample] = []
    no_negative = 0
    for qid in sorted(ls.qrels):
        query = normalise_query(ls.queries.get(qid, ""))
        if not query or query in exclude:
            continue
        judged = sorted((pid, g) for pid, g in ls.qrels[qid].items() if pid in texts)
        positives = [pid for pid, g in judged if g >= pos_min]
        negatives = [pid for pid, g in judged if g <= neg_max]
        if positives and not negatives:
            no_negative += 1
        if not negatives:
            continue
        for pos in positives:  # titles repeat across ids: never pit a title against itself
            usable = [n for n in negatives if texts[n] != texts[pos]]
            if usable:
                out.append(TrainingExample(query, texts[pos], texts[rng.choice(usable)]))
    logger.info(
        "%s: %d triples (grades >= %d vs <= %d); %d queries with positives but no judged "
        "negative skipped",
        ls.name,
        len(out),
        pos_min,
        neg_max,
        no_negative,
    )
    return out


def _even_shares(sizes: Sequence[int], total: int) -> list[int]:
    """Split ``total`` as evenly as ``sizes`` allow: smallest first, each takes at most its
    fair share of what is left, so what a small set cannot fill goes to the larger ones."""
    shares, left = [0] * len(sizes), total
    order = sorted(range(len(sizes)), key=lambda i: sizes[i])
    for rank, i in enumerate(order):
        shares[i] = min(sizes[i], -(-left // (len(order) - rank)))
        left -= shares[i]
    return shares


def labelled_examples(
    sets: LabelledSet | Sequence[LabelledSet],
    *,
    max_examples: int,
    seed: int,
    exclude_queries: Set[str] = frozenset(),
    pos_min_grade: int | None = None,
    neg_max_grade: int | None = None,
) -> list[TrainingExample]:
    """Up to ``max_examples`` (query, positive, negative) triples from one or several sets.

    Several sets are mixed evenly: each gets an equal share, and a set with too few triples
    leaves the rest to the others. Within a set the triples are a uniform sample without
    replacement; the result is shuffled. The same inputs and ``seed`` give the same list.
    Grade cut-offs default per set from its ``max_grade`` (see :func:`grade_cutoffs`).
    """
    group = [sets] if isinstance(sets, LabelledSet) else list(sets)
    rng = random.Random(seed)
    exclude = {normalise_query(q) for q in exclude_queries}
    pools = [
        candidate_triples(
            ls, rng, exclude=exclude, pos_min_grade=pos_min_grade, neg_max_grade=neg_max_grade
        )
        for ls in group
    ]
    shares = _even_shares([len(p) for p in pools], max(0, max_examples))
    out = [ex for pool, n in zip(pools, shares, strict=True) for ex in rng.sample(pool, n)]
    rng.shuffle(out)
    return out


TrainingRecord = Callable[[Sequence[TrainingExample], TrainSettings, TrainResult], dict[str, Any]]
"""Builds a card's ``training`` field from the triples, the settings trained with and the run."""


def train_labelled(
    settings: Settings,
    sets: LabelledSet | Sequence[LabelledSet],
    *,
    base: str,
    examples: int,
    exclude_queries: Set[str] = frozenset(),
    source: str | None = None,
    invert: bool = False,
    train: TrainSettings | None = None,
    progress: Progress | None = None,
    on_triples: Callable[[Sequence[TrainingExample]], None] | None = None,
    record: TrainingRecord | None = None,
) -> tuple[ModelCard, TrainResult]:
    """Fine-tune version ``base`` (or a checkpoint path) on labelled triples and register the
    result as a new version, not promoted (``flywheel train``, the benchmarks' references).

    ``invert`` swaps positives and negatives: a deliberately worse model, for the decision
    benchmark's trials. Queries in ``exclude_queries`` (held-out or test) are never used.
    ``train`` replaces the training settings (default: ``settings.train`` capped at
    ``examples``). ``progress(step, total_steps)`` follows the training steps;
    ``on_triples`` sees the drawn triples before training starts (a progress display's count,
    what a benchmark trained on). ``record`` builds the card's ``training`` field instead of
    the default one.
    """
    from services.encoding.package import register_model
    from services.encoding.torch_splade import load_mlm
    from services.registry import ModelRegistry

    registry = ModelRegistry(settings.registry_dir)
    group = [sets] if isinstance(sets, LabelledSet) else list(sets)
    triples = labelled_examples(
        group, max_examples=examples, seed=settings.train.seed, exclude_queries=exclude_queries
    )
    if invert:
        triples = [TrainingExample(t.query, t.negative, t.positive, t.weight) for t in triples]
    if not triples:
        raise ConfigError(
            f"no training triples in {', '.join(s.name for s in group)}: the sets need queries "
            "with both a highly and a lowly graded product."
        )
    if on_triples is not None:
        on_triples(triples)
    start = str(registry.path(base)) if base in registry.versions() else base
    cfg = (
        train if train is not None else settings.train.model_copy(update={"max_examples": examples})
    )
    settings.home.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="train-", dir=settings.home) as tmp:
        out = Path(tmp) / "model"
        result = train_splade(start, triples, out, cfg, progress=progress)
        model, tokenizer = load_mlm(str(out))
        card = register_model(
            registry,
            model,
            tokenizer,
            source=source or f"train:{'+'.join(s.name for s in group)}",
            encoder=settings.encoder,
            parent=base if base in registry.versions() else None,
            training=(record or partial(_default_record, invert=invert))(triples, cfg, result),
        )
    return card, result


def _default_record(
    triples: Sequence[TrainingExample], cfg: TrainSettings, result: TrainResult, *, invert: bool
) -> dict[str, Any]:
    return {
        "examples": len(triples),
        "queries": len({t.query for t in triples}),
        "inverted": invert,
        "hyperparameters": cfg.model_dump(),
        "result": {
            "device": result.device,
            "steps": result.steps,
            "seconds": round(result.seconds, 1),
            "final_loss": result.final_loss,
        },
    }
