"""Adapter for any labelled set written as corpus + queries + qrels (TREC or BEIR style)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

from services.catalog import products_from_rows, read_rows
from services.datasets.base import LabelledSet, Qrels
from services.datasets.protocol import add_judgment
from services.errors import DatasetError

log = logging.getLogger(__name__)

CORPUS_NAMES = ("corpus.jsonl", "corpus.ndjson", "corpus.parquet", "corpus.csv", "corpus.tsv")
QUERY_NAMES = ("queries.tsv", "queries.jsonl")
QRELS_NAMES = ("qrels.tsv", "qrels.txt", "qrels/test.tsv")
_HEADER_IDS = {"qid", "query_id", "query-id", "id", "_id"}


def _find(directory: Path | None, given: str | Path | None, names: Sequence[str]) -> Path:
    if given is not None:
        path = Path(given)
    elif directory is not None:
        found = [directory / n for n in names if (directory / n).is_file()]
        path = found[0] if found else directory / names[0]
    else:
        raise DatasetError(f"no directory and no file given; pass a directory holding {names[0]}.")
    if not path.is_file():
        raise DatasetError(
            f"{path} not found; expected one of {', '.join(names)} (or pass the path)."
        )
    return path


def _lines(path: Path) -> list[tuple[int, str]]:
    with path.open(encoding="utf-8-sig") as fh:
        return [(i, s) for i, line in enumerate(fh, 1) if (s := line.rstrip("\r\n")).strip()]


def read_queries(path: Path) -> dict[str, str]:
    """``queries.jsonl`` (BEIR: ``{"_id": ..., "text": ...}``) or ``queries.tsv`` (qid TAB text,
    optional header)."""
    queries: dict[str, str] = {}
    for lineno, line in _lines(path):
        if path.suffix in (".jsonl", ".ndjson"):
            try:
                row = json.loads(line)
                qid, text = row.get("_id", row.get("id")), row.get("text", row.get("query"))
            except (json.JSONDecodeError, AttributeError) as exc:
                raise DatasetError(
                    f"{path}:{lineno} is not a JSON object with _id and text."
                ) from exc
        else:
            qid, _, text = line.partition("\t")
            if not queries and qid.strip().lower() in _HEADER_IDS:
                continue
        if qid is None or not str(text or "").strip():
            raise DatasetError(f"{path}:{lineno} has no query id or no text; fix or remove it.")
        queries[str(qid).strip()] = " ".join(str(text).split())
    return queries


def read_qrels(path: Path) -> Qrels:
    """TREC (``qid 0 docid grade``, whitespace) or BEIR (``query-id corpus-id score``, tab, with
    header) judgments; negative grades count as 0 and repeated pairs keep the highest."""
    qrels: Qrels = {}
    for lineno, line in _lines(path):
        parts = line.split("\t") if "\t" in line else line.split()
        if lineno == 1 and parts[0].strip().lower() in _HEADER_IDS:
            continue
        if len(parts) not in (3, 4):
            raise DatasetError(
                f"{path}:{lineno} has {len(parts)} fields; write 'qid 0 docid grade' (TREC) "
                "or 'query-id<TAB>corpus-id<TAB>score' (BEIR)."
            )
        qid, pid, raw = parts[0].strip(), parts[-2].strip(), parts[-1].strip()
        try:
            grade = max(0, round(float(raw)))
        except ValueError as exc:
            raise DatasetError(f"{path}:{lineno}: grade {raw!r} is not a number.") from exc
        add_judgment(qrels, qid, pid, grade)
    return qrels


def load_qrels_dataset(
    directory: str | Path | None = None,
    *,
    corpus: str | Path | None = None,
    queries: str | Path | None = None,
    qrels: str | Path | None = None,
    text_columns: Sequence[str] | None = None,
) -> LabelledSet:
    """Load a corpus/queries/qrels set from ``directory`` or from explicit paths.

    The corpus is any file :func:`services.catalog.load_catalog` reads; a BEIR corpus with
    ``title`` and ``text`` fields uses both as text unless ``text_columns`` says otherwise.
    Judgments of unknown queries or products are dropped with a warning (counted in
    ``notes``); ``max_grade`` is the highest grade seen (at least 1).
    """
    root = Path(directory) if directory is not None else None
    corpus_path = _find(root, corpus, CORPUS_NAMES)
    rows = read_rows(corpus_path)
    if text_columns is None and rows and {"title", "text"} <= rows[0].keys():
        text_columns = ("title", "text")
    products = products_from_rows(rows, text_columns=text_columns, source=str(corpus_path))
    query_text = read_queries(_find(root, queries, QUERY_NAMES))
    judged = read_qrels(_find(root, qrels, QRELS_NAMES))
    known = {p.id for p in products}
    kept: Qrels = {}
    dropped = 0
    for qid, grades in judged.items():
        for pid, grade in grades.items():
            if qid in query_text and pid in known:
                add_judgment(kept, qid, pid, grade)
            else:
                dropped += 1
    if dropped:
        log.warning("%s: dropped %d judgments of unknown queries or products", corpus_path, dropped)
    if not kept:
        raise DatasetError(
            f"no judgment matches a query in the queries file and a product in {corpus_path}; "
            "check that the ids agree."
        )
    return LabelledSet(
        name=f"qrels:{(root or corpus_path.parent).name}",
        products=products,
        queries=query_text,
        qrels=kept,
        max_grade=max([1, *(g for grades in kept.values() for g in grades.values())]),
        notes={"source": str(root or corpus_path), "dropped": str(dropped)},
    )
