"""BM25 sparse vectors for the ``bm25`` named vector of every index backend.

Qdrant's BM25 split: a *document* vector carries the saturated term frequency
``tf·(k+1) / (tf + k·(1 − b + b·len/avg_len))`` per term, a *query* vector carries 1.0 per
distinct term, and the engine multiplies in the IDF because the ``bm25`` vector is configured
with the IDF modifier. The dot product is then the textbook BM25 score, with IDF always
computed over the live index. Term ids are hashes of the analysed tokens (English: word
tokenizer, lowercase, English stop words, Snowball English stemmer), identical to Qdrant's
server-side BM25, so the same vectors go to Qdrant Edge and to a Qdrant server.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

import numpy as np
import qdrant_edge as qe

from services.sparse import SparseVec

logger = logging.getLogger(__name__)

DEFAULT_K = 1.2
DEFAULT_B = 0.75
DEFAULT_AVG_LEN = 256.0
"""Qdrant's default average document length; far too long for product titles, so pass the
catalog's own (see :meth:`Bm25Encoder.for_corpus`)."""

_COUNT_K = 1e6
"""With ``b = 0`` and a huge ``k`` a document weight is ``tf·(k+1)/(tf+k)``, which inverts
exactly to the term frequency; :meth:`Bm25Encoder.token_count` uses that."""


def _config(k: float, b: float, avg_len: float) -> qe.Bm25Config:
    return qe.Bm25Config(
        k=k,
        b=b,
        avg_len=avg_len,
        tokenizer=qe.TokenizerType.Word,
        language="english",
        lowercase=True,
        stopwords=qe.Language.English,
        stemmer=qe.SnowballParams(qe.SnowballLanguage.English),
    )


def _to_sparse(vector: qe.SparseVector) -> SparseVec:
    return SparseVec.from_lists(list(vector.indices), list(vector.values))


class Bm25Encoder:
    """English BM25 encoder producing :class:`SparseVec` documents and queries."""

    def __init__(
        self, *, avg_len: float | None = None, k: float = DEFAULT_K, b: float = DEFAULT_B
    ) -> None:
        """Build the encoder; ``avg_len`` is the mean analysed token count of a document
        (``None`` means Qdrant's default of 256)."""
        self._avg_len = DEFAULT_AVG_LEN if avg_len is None else float(avg_len)
        self._k = k
        self._b = b
        self._model = qe.Bm25(_config(k, b, self._avg_len))
        self._counter = qe.Bm25(_config(_COUNT_K, 0.0, DEFAULT_AVG_LEN))

    @classmethod
    def for_corpus(
        cls, texts: Iterable[str], *, k: float = DEFAULT_K, b: float = DEFAULT_B
    ) -> Bm25Encoder:
        """An encoder whose ``avg_len`` is the mean token count of ``texts`` (the catalog)."""
        probe = cls(k=k, b=b)
        counts = [probe.token_count(text) for text in texts]
        mean = float(np.mean(counts)) if counts else 0.0
        avg_len = mean if mean > 0 else DEFAULT_AVG_LEN
        logger.info("BM25 avg_len %.2f over %d documents", avg_len, len(counts))
        return cls(avg_len=avg_len, k=k, b=b)

    @property
    def avg_len(self) -> float:
        """The average document length in tokens used for length normalisation."""
        return self._avg_len

    @property
    def k(self) -> float:
        """Term-frequency saturation."""
        return self._k

    @property
    def b(self) -> float:
        """Length normalisation strength in [0, 1]."""
        return self._b

    def token_count(self, text: str) -> int:
        """Number of tokens of ``text`` after analysis (stop words removed), as BM25 counts."""
        values = np.asarray(self._counter.embed_document(text).values, dtype=np.float64)
        tf = values * _COUNT_K / (_COUNT_K + 1.0 - values)
        return round(float(tf.sum()))

    def encode_documents(self, texts: Sequence[str]) -> list[SparseVec]:
        """Document vectors: saturated, length-normalised term frequencies (no IDF)."""
        return [_to_sparse(self._model.embed_document(text)) for text in texts]

    def encode_query(self, text: str) -> SparseVec:
        """Query vector: weight 1.0 per distinct analysed term (empty if only stop words)."""
        return _to_sparse(self._model.embed_query(text))
