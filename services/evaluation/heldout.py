"""Held-out evaluation: model versions measured on one fixed set of judged queries.

The demo, the flywheel and decision benchmarks and the retrainer's gate all compare versions
on queries that were never trained on. :class:`HeldOutSet` is such a set (sampled
reproducibly); :class:`HeldOutEvaluator` ranks it with each version exactly as ``GET /search``
does (:func:`services.evaluation.runner.rank`: the version's own encoder and index) and keeps
each (version, mode) run, so a version is searched once however many reports use it. Reports
are nDCG@10 (Järvelin & Kekäläinen, 2002), MRR@10 and Recall@100 with paired tests
(:func:`services.evaluation.metrics.evaluate_runs`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from services.datasets.base import LabelledSet, Qrels
from services.datasets.protocol import sample_queries
from services.encoding.base import SpladeEncoder
from services.errors import DatasetError
from services.evaluation.metrics import DEFAULT_METRICS, Run, condensed, evaluate_runs
from services.evaluation.report import EvalReport
from services.evaluation.runner import rank
from services.evaluation.systems import LIMIT, hits_to_run
from services.index.base import ProductIndex
from services.index.fusion import DEFAULT_FUSION, Fusion
from services.settings import SearchMode

logger = logging.getLogger(__name__)

IndexOpener = Callable[[str], AbstractContextManager[ProductIndex]]
"""Opens a version's index for reading and closes it on exit."""
BM25 = "bm25"
"""Pseudo-version of the BM25 run: every version's index holds the same BM25 vectors."""


@dataclass(frozen=True, slots=True)
class HeldOutSet:
    """Judged queries to measure versions on: ids, texts and graded judgments."""

    name: str
    queries: dict[str, str]
    qrels: Qrels

    def __len__(self) -> int:
        return len(self.queries)

    @property
    def texts(self) -> frozenset[str]:
        """The query texts (what a leakage check compares training data against)."""
        return frozenset(self.queries.values())

    @classmethod
    def sample(
        cls,
        labelled: LabelledSet,
        *,
        among: Iterable[str] | None = None,
        at_most: int,
        min_judged: int = 1,
        min_grade: int = 1,
        seed: int = 42,
    ) -> HeldOutSet:
        """Up to ``at_most`` queries of ``labelled`` (only those in ``among`` when given) with
        at least ``min_judged`` judged products and one of grade ``min_grade`` or more (0: any
        grade, as the reference protocol). The draw is the protocol's own
        (:func:`~services.datasets.protocol.sample_queries`: sorted ids, ``random.Random(seed)``),
        so the same inputs always give the same set, and a benchmark's test queries are the
        ones the reference figures were measured on.

        Raises:
            DatasetError: no query is eligible.
        """
        allowed = set(among) if among is not None else set(labelled.queries)
        graded = [
            q
            for q in sorted(allowed)
            if q in labelled.queries
            and labelled.qrels.get(q)
            and max(labelled.qrels[q].values()) >= min_grade
        ]
        try:
            chosen = sample_queries(
                labelled.restrict(graded), at_most=at_most, min_judged=min_judged, seed=seed
            )
        except DatasetError as exc:
            raise DatasetError(
                f"{labelled.name}: no held-out query has {min_judged}+ judged products and a "
                f"grade >= {min_grade}; use a larger labelled set or a larger held-out share."
            ) from exc
        return cls(
            name=labelled.name,
            queries={q: labelled.queries[q] for q in chosen},
            qrels={q: dict(labelled.qrels[q]) for q in chosen},
        )


class HeldOutEvaluator:
    """Rankings of versions over a :class:`HeldOutSet`, each computed once."""

    def __init__(
        self,
        heldout: HeldOutSet,
        *,
        encoder: Callable[[str], SpladeEncoder],
        open_index: IndexOpener,
        fusion: Fusion = DEFAULT_FUSION,
        limit: int = LIMIT,
        workers: int = 0,
    ) -> None:
        self.heldout = heldout
        self._encoder = encoder
        self._open = open_index
        self.fusion = fusion
        self.limit = limit
        self.workers = workers
        self._runs: dict[tuple[str, SearchMode], Run] = {}

    def runs(self, version: str, modes: Sequence[SearchMode]) -> dict[SearchMode, Run]:
        """``version``'s run in each mode (BM25 is shared by every version)."""
        missing = [m for m in modes if self._key(version, m) not in self._runs]
        if missing:
            qids = sorted(self.heldout.queries)
            texts = [self.heldout.queries[q] for q in qids]
            encoder = None if set(missing) == {"bm25"} else self._encoder(version)
            with self._open(version) as index:
                for mode in missing:
                    hits = rank(
                        index,
                        encoder,
                        texts,
                        mode=mode,
                        limit=self.limit,
                        fusion=self.fusion,
                        workers=self.workers,
                    )
                    self._runs[self._key(version, mode)] = hits_to_run(qids, hits)
            logger.info("ranked %d held-out queries with %s (%s)", len(qids), version, missing)
        return {m: self._runs[self._key(version, m)] for m in modes}

    def run(self, version: str, mode: SearchMode) -> Run:
        """One version's run in one mode."""
        return self.runs(version, [mode])[mode]

    def forget(self, version: str) -> None:
        """Drop a version's cached runs (e.g. once it is deleted)."""
        for key in [k for k in self._runs if k[0] == version]:
            del self._runs[key]

    def report(
        self,
        systems: Mapping[str, tuple[str, SearchMode]],
        *,
        baseline: str | None = None,
        alpha: float = 0.05,
        metrics: Sequence[str] = DEFAULT_METRICS,
        dataset: str | None = None,
        judged_only: bool = False,
    ) -> EvalReport:
        """Metrics of named systems, each a (version, mode), with paired tests against
        ``baseline`` (default: the first system); ``judged_only`` scores condensed lists
        (:func:`services.evaluation.metrics.condensed`)."""
        runs = {name: self.run(version, mode) for name, (version, mode) in systems.items()}
        if judged_only:
            runs = {name: condensed(self.heldout.qrels, run) for name, run in runs.items()}
        protocol: dict[str, Any] = {
            "systems": {name: f"{version} {mode}" for name, (version, mode) in systems.items()},
            "judged_only": judged_only,
        }
        if any(mode == "hybrid" for _, mode in systems.values()):
            protocol["fusion"] = self.fusion.describe()
        return evaluate_runs(
            self.heldout.qrels,
            runs,
            metrics=metrics,
            baseline=baseline,
            alpha=alpha,
            dataset=dataset or self.heldout.name,
            protocol=protocol,
        )

    @staticmethod
    def _key(version: str, mode: SearchMode) -> tuple[str, SearchMode]:
        return (BM25, mode) if mode == "bm25" else (version, mode)
