"""An optional LLM query generator behind any OpenAI-compatible chat-completions endpoint.

InPars (Bonifacio et al., 2022) and Promptagator (Dai et al., 2022) prompt a large language
model for queries a document answers, and train the retriever on them; doc2query (Nogueira
et al., 2019) did the same with a fine-tuned seq2seq model. Here the prompt gives one product
title and asks for ``n`` short queries a shopper would type, one per line; the answer is
parsed (a JSON list or lines, bullets and numbering stripped), lowercased, deduplicated, bound
to :data:`MAX_WORDS` words and :data:`MAX_CHARS` characters, and a query equal to the title is
dropped. Any endpoint speaking ``POST {url}/chat/completions`` works (vLLM, llama.cpp,
Ollama, OpenAI).

It never fails the run: a timeout, an HTTP or transport error, or an answer with no usable
query is counted, and that product gets the offline generator's queries instead. After
:data:`MAX_CONSECUTIVE_FAILURES` failures in a row the endpoint is taken for down and the rest
of the products go to the offline generator directly (counted as ``skipped``).
"""

from __future__ import annotations

import json
import logging
import random
import re
import threading
from collections.abc import Callable, Sequence, Set
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import httpx

from retrainer.adapt.queries import QueryPair, product_query, title_of
from services.datasets.protocol import normalise_query
from services.products import Product
from services.settings import AdaptSettings

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
MAX_WORDS = 6
MAX_CHARS = 80
MAX_CONSECUTIVE_FAILURES = 5
SYSTEM_PROMPT = "You write the search queries that shoppers type into an online store's search box."
PROMPT = (
    "Product title: {title}\n\n"
    "Write {n} different short search queries (2 to 5 words each) that a shopper looking for "
    "this product might type. Use everyday words, not the full title. Answer with one query "
    "per line and nothing else."
)
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s*")


@dataclass(slots=True)
class LlmStats:
    """What the endpoint gave: products asked, answered and failed (by cause), pairs made."""

    asked: int = 0
    answered: int = 0
    pairs: int = 0
    timeouts: int = 0
    errors: int = 0
    malformed: int = 0
    skipped: int = 0
    fallback_pairs: int = 0

    def as_dict(self) -> dict[str, int]:
        """For the model card."""
        return asdict(self)


def parse_queries(content: str, title: str, n: int) -> list[str]:
    """Up to ``n`` distinct usable queries from an answer: a JSON list of strings, else one
    query per line (bullets, numbering and quotes stripped)."""
    try:
        loaded = json.loads(content)
        lines = [str(x) for x in loaded] if isinstance(loaded, list) else []
    except ValueError:
        lines = content.splitlines()
    full = normalise_query(title)
    out: list[str] = []
    for line in lines:
        query = normalise_query(_BULLET.sub("", line).strip().strip("\"'`"))
        words = query.split()
        if (
            not query
            or query == full
            or len(words) > MAX_WORDS
            or len(query) > MAX_CHARS
            or not any(c.isalpha() for c in query)
            or query in out
        ):
            continue
        out.append(query)
    return out[:n]


class LlmGenerator:
    """Queries from an OpenAI-compatible endpoint, with the offline generator as fallback."""

    def __init__(self, cfg: AdaptSettings, *, client: httpx.Client | None = None) -> None:
        if not cfg.llm_url:
            raise ValueError("LlmGenerator needs cfg.llm_url")
        base = cfg.llm_url.rstrip("/")
        self.url = base if base.endswith("/chat/completions") else f"{base}/chat/completions"
        self.cfg = cfg
        headers = {"Content-Type": "application/json"}
        if cfg.llm_api_key is not None:
            headers["Authorization"] = f"Bearer {cfg.llm_api_key.get_secret_value()}"
        self.client = client or httpx.Client(timeout=cfg.llm_timeout_s, headers=headers)
        self.stats = LlmStats()
        self._lock = threading.Lock()
        self._failures_in_a_row = 0

    def close(self) -> None:
        """Release the HTTP connections."""
        self.client.close()

    def ask(self, title: str, n: int) -> list[str]:
        """One request; the parsed queries (raises on transport errors and HTTP errors)."""
        body: dict[str, Any] = {
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": PROMPT.format(title=title, n=n)},
            ],
            "temperature": 0.7,
            "max_tokens": 32 * n,
            "seed": self.cfg.seed,
        }
        if self.cfg.llm_model:
            body["model"] = self.cfg.llm_model
        response = self.client.post(self.url, json=body)
        response.raise_for_status()
        content = response.json()["choices"][0]["message"]["content"]
        return parse_queries(str(content), title, n)

    def _queries(self, product: Product) -> list[str]:
        """The product's LLM queries; [] when it failed or was skipped (counted)."""
        with self._lock:
            if self._failures_in_a_row >= MAX_CONSECUTIVE_FAILURES:
                self.stats.skipped += 1
                return []
            self.stats.asked += 1
        cause = None
        try:
            queries = self.ask(title_of(product), self.cfg.llm_queries_per_product)
            cause = None if queries else "malformed"
        except httpx.TimeoutException:
            queries, cause = [], "timeouts"
        except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError) as exc:
            malformed = isinstance(exc, ValueError | KeyError | IndexError | TypeError)
            queries, cause = [], "malformed" if malformed else "errors"
            logger.debug("LLM request for %s failed: %s", product.id, exc)
        with self._lock:
            if cause is None:
                self.stats.answered += 1
                self._failures_in_a_row = 0
            else:
                setattr(self.stats, cause, getattr(self.stats, cause) + 1)
                self._failures_in_a_row += 1
        return queries

    def generate(
        self,
        products: Sequence[Product],
        n_pairs: int,
        *,
        exclude_queries: Set[str] = frozenset(),
        progress: Progress | None = None,
    ) -> list[QueryPair]:
        """About ``n_pairs`` pairs: ``llm_queries_per_product`` per product, over a seeded
        sample of the products; a product the endpoint failed gets offline queries. Queries
        in ``exclude_queries`` (the gate's) are dropped."""
        excluded = {normalise_query(q) for q in exclude_queries}
        rng = random.Random(self.cfg.seed)
        per = self.cfg.llm_queries_per_product
        order = list(products)
        rng.shuffle(order)
        chosen = order[: -(-n_pairs // per)]
        done = 0
        results: list[list[str]] = []
        with ThreadPoolExecutor(max_workers=self.cfg.llm_concurrency) as pool:
            for queries in pool.map(self._queries, chosen):
                results.append(queries)
                done += 1
                if progress:
                    progress(done, len(chosen))
        pairs: list[QueryPair] = []
        for product, queries in zip(chosen, results, strict=True):
            if queries:
                kept = [q for q in queries if q not in excluded]
                pairs.extend(QueryPair(q, product.id, "llm") for q in kept)
                self.stats.pairs += len(kept)
                continue
            made = {m for m in (product_query(product, rng) for _ in range(per)) if m}
            for query, kind in sorted(made):
                if query not in excluded:
                    pairs.append(QueryPair(query, product.id, kind))
                    self.stats.fallback_pairs += 1
        if self.stats.asked and self.stats.answered < self.stats.asked:
            logger.warning(
                "LLM generator: %d of %d products failed (%d timeouts, %d errors, %d malformed), "
                "%d skipped; they got offline queries",
                self.stats.asked - self.stats.answered,
                self.stats.asked,
                self.stats.timeouts,
                self.stats.errors,
                self.stats.malformed,
                self.stats.skipped,
            )
        return pairs[:n_pairs]
