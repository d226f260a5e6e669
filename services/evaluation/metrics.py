"""Offline ranking metrics over ranx, with a paired significance test against a baseline.

Metrics (ranx names):

* ``ndcg@k`` — normalised discounted cumulative gain (Järvelin & Kekäläinen, 2002, "Cumulated
  gain-based evaluation of IR techniques", ACM TOIS 20(4)) with *linear* gain: a document of
  grade g at rank i adds ``g / log2(i + 1)``; the ideal list sorts the query's judged grades.
  With Home Depot's grades ``round((relevance - 1) * 3)`` (0..6) this is the reference protocol
  of ``shared/data/homedepot/README.md``. (ranx's ``ndcg_burges`` would use ``2^g - 1``.)
* ``mrr@k`` — reciprocal rank of the first relevant document in the top k (Voorhees, 1999).
* ``recall@k`` — share of the query's relevant documents found in the top k.

"Relevant" for MRR and recall means grade >= 1, so grade 0 (judged irrelevant) never counts.
Ties in a run are broken by product id (see :func:`comparable_run`). Every query of the qrels
is scored: a query a system returned nothing for scores 0 on every
metric instead of being dropped. A query whose judgments are all grade 0 scores 0 as well.

Significance: ranx's two-sided paired Student's t-test over per-query scores (``stat_test=
"student"``, i.e. ``scipy.stats.ttest_rel``), each system against the baseline, at level
``alpha``. Identical per-query scores give p = 1.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from ranx import Qrels as RanxQrels
from ranx import Run as RanxRun
from ranx import compare

from services.datasets.base import Qrels
from services.errors import ConfigError
from services.evaluation.report import EvalReport

logger = logging.getLogger(__name__)

Run = dict[str, dict[str, float]]
"""query id -> product id -> score (higher is better)."""

DEFAULT_METRICS = ("ndcg@10", "mrr@10", "recall@100")
STAT_TEST = "student"
STAT_TEST_NAME = "two-sided paired Student's t-test (ranx 'student', scipy ttest_rel)"
NO_RESULT = "\x00no-result"
"""Placeholder document for a query with no results: ranx cannot build a run in which every
query is empty, and this id is never judged, so it scores 0."""


def comparable_run(qrels: Qrels, run: Mapping[str, Mapping[str, float]]) -> Run:
    """``run`` restricted to the queries of ``qrels``, as strictly decreasing rank scores.

    Ties are broken by product id, so figures do not depend on the order in which an engine
    (Qdrant returns equal BM25 scores in an order that varies between index builds) or ranx
    (an unstable sort) happens to put equal scores. A query without results gets an unjudged
    placeholder, so it scores 0 rather than being dropped.
    """
    extra = len(set(run) - set(qrels))
    if extra:
        logger.debug("ignoring %d run queries that have no judgments", extra)
    out: Run = {}
    for qid in qrels:
        ranked = sorted(run.get(qid, {}).items(), key=lambda item: (-float(item[1]), str(item[0])))
        docs = {str(doc): float(len(ranked) - rank) for rank, (doc, _) in enumerate(ranked)}
        out[qid] = docs or {NO_RESULT: 0.0}
    return out


def condensed(qrels: Qrels, run: Mapping[str, Mapping[str, float]]) -> Run:
    """``run`` with every unjudged product removed, ranks closing up (a condensed list; Sakai,
    2007, "Alternatives to Bpref", SIGIR).

    With incomplete judgments, such as clicks on what one ranker showed, an unjudged product
    counts as irrelevant and costs a system that ranks it: the one that did not produce the
    judgments pays for every product the other never showed. On condensed lists each system is
    scored only on the order it gives the products that were judged.
    """
    return {
        qid: {doc: score for doc, score in run.get(qid, {}).items() if doc in judged}
        for qid, judged in qrels.items()
    }


def _p_value(value: Any, control: Sequence[float], treatment: Sequence[float]) -> float:
    p = float(value)
    if math.isnan(p):  # ttest_rel on zero differences: no evidence of any difference
        same = all(math.isclose(a, b) for a, b in zip(control, treatment, strict=True))
        return 1.0 if same else p
    return p


def evaluate_runs(
    qrels: Qrels,
    runs: Mapping[str, Mapping[str, Mapping[str, float]]],
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
    baseline: str | None = None,
    alpha: float = 0.05,
    dataset: str = "",
    protocol: Mapping[str, Any] | None = None,
) -> EvalReport:
    """Score every run on every query of ``qrels`` and test each against the baseline.

    ``runs`` maps a system name to its run; ``baseline`` (default: the first system) is the
    control of the paired t-tests. Per-query scores of ``metrics[0]`` are kept in the report.

    Raises:
        ConfigError: no runs, no judged queries, or an unknown baseline.
    """
    judged = {qid: dict(docs) for qid, docs in qrels.items() if docs}
    if not runs or not judged:
        raise ConfigError("nothing to evaluate: pass at least one run and one judged query.")
    names = list(runs)
    control = baseline if baseline is not None else names[0]
    if control not in runs:
        raise ConfigError(f"baseline {control!r} is not among the systems {names}.")
    ranx_runs = []
    for name in names:
        ranx_run = RanxRun.from_dict(comparable_run(judged, runs[name]))
        ranx_run.name = name
        ranx_runs.append(ranx_run)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numba's uint64->int64 cast warning on hashed ids
        report = compare(
            RanxQrels.from_dict(judged),
            ranx_runs,
            list(metrics),
            stat_test=STAT_TEST,
            max_p=alpha,
            make_comparable=False,
        )
    scores = {r.name: {m: dict(r.scores[m]) for m in metrics} for r in ranx_runs}
    p_values: dict[str, dict[str, float]] = {}
    significant: dict[str, dict[str, bool]] = {}
    for name in names:
        if name == control:
            continue
        tests = report.comparisons[frozenset((control, name))]
        p_values[name], significant[name] = {}, {}
        for m in metrics:
            base = [scores[control][m][q] for q in judged]
            other = [scores[name][m][q] for q in judged]
            p = _p_value(tests[m]["p_value"], base, other)
            p_values[name][m] = p
            significant[name][m] = bool(p <= alpha)
    primary = metrics[0]
    return EvalReport(
        dataset=dataset,
        metrics=list(metrics),
        primary_metric=primary,
        systems=names,
        baseline=control,
        stat_test=STAT_TEST_NAME,
        alpha=alpha,
        num_queries=len(judged),
        means={n: {m: float(report.results[n][m]) for m in metrics} for n in names},
        per_query={n: {q: float(v) for q, v in scores[n][primary].items()} for n in names},
        p_values=p_values,
        significant=significant,
        protocol=dict(protocol or {}),
    )
