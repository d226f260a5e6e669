"""Python's standard-library reference documentation as a labelled set, built offline.

An out-of-domain check for a model adapted to a product catalog: software reference text shares
little vocabulary or phrasing with product titles, so a model that still finds these documents
after adapting has kept its general retrieval ability (catastrophic forgetting would show here
first; McCloskey & Cohen, 1989).

Every public function, class and method of the interpreter's own standard-library sources is
read with :mod:`ast` (never imported, so no module runs) and becomes a document: its qualified
name and its docstring. Where the docstring has a one-line summary and a body, the summary is
a query and the document holding the body (its name and the body, not the summary) is its one
relevant result, grade 1: known-item retrieval of reference documentation from its summary, in
the manner of CodeSearchNet's docstring pairs (Husain et al., 2019). Summaries that occur more
than once in the library (``Return self.``) or that are not prose (``word = atom / ...``) are
not queries. The set depends only on the Python version, recorded in its notes.
"""

from __future__ import annotations

import ast
import hashlib
import logging
import platform
import re
import sysconfig
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from services.datasets.base import LabelledSet
from services.errors import DatasetError
from services.products import Product

logger = logging.getLogger(__name__)

SKIPPED_PARTS = frozenset(
    {
        "test",
        "tests",
        "idlelib",
        "tkinter",
        "turtledemo",
        "lib2to3",
        "ensurepip",
        "site-packages",
        "dist-packages",
        "pydoc_data",
        "__pycache__",
    }
)
"""Folders of the library that are tests, tools or installed packages, not its reference."""
SUMMARY_WORDS = (4, 20)
"""A query is a summary of this many words (inclusive)."""
MIN_BODY_WORDS = 8
MAX_DOC_WORDS = 120
"""Documents are cut here: the encoders read a few hundred tokens at most anyway."""
_PROSE = re.compile(r"^[A-Za-z][A-Za-z0-9 ,;:'\-]*\.?$")
"""A summary made of words and light punctuation (no code, no signatures, no URLs)."""


@dataclass(frozen=True, slots=True)
class _Doc:
    name: str
    summary: str
    body: str


def stdlib_root() -> Path:
    """The running interpreter's standard-library folder."""
    return Path(sysconfig.get_paths()["stdlib"])


def _words(text: str) -> str:
    return " ".join(text.split())


def _docs(root: Path) -> Iterator[_Doc]:
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if any(p in SKIPPED_PARTS or p.startswith(("config-", "_")) for p in parts[:-1]):
            continue
        if parts[-1].startswith("_") and parts[-1] != "__init__":
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue  # a few library files are templates or other encodings
        module = ".".join(parts).removesuffix(".__init__")
        yield from _walk(tree, module)


def _walk(node: ast.AST, prefix: str) -> Iterator[_Doc]:
    for child in ast.iter_child_nodes(node):
        if not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue
        if child.name.startswith("_"):
            continue
        name = f"{prefix}.{child.name}"
        doc = ast.get_docstring(child)
        if doc:
            first, _, rest = doc.strip().partition("\n\n")
            yield _Doc(name, _words(first), _words(rest))
        if isinstance(child, ast.ClassDef):
            yield from _walk(child, name)


def _is_query(doc: _Doc) -> bool:
    low, high = SUMMARY_WORDS
    return (
        low <= len(doc.summary.split()) <= high
        and len(doc.body.split()) >= MIN_BODY_WORDS
        and bool(_PROSE.match(doc.summary))
    )


def _id(prefix: str, name: str) -> str:
    return f"{prefix}{hashlib.blake2s(name.encode(), digest_size=6).hexdigest()}"


def load_pydocs(root: Path | None = None) -> LabelledSet:
    """The standard library under ``root`` (default: this interpreter's) as a labelled set.

    Raises:
        DatasetError: ``root`` holds no documented Python source.
    """
    root = root or stdlib_root()
    docs = list(_docs(root))
    if not docs:
        raise DatasetError(
            f"no documented Python source under {root}; point pydocs:DIR at a Python "
            "standard-library folder (python -c 'import sysconfig; "
            'print(sysconfig.get_paths()["stdlib"])\').'
        )
    seen: dict[str, _Doc] = {}
    for doc in docs:
        seen.setdefault(doc.name, doc)  # a name defined twice (platform branches): the first
    repeated = Counter(d.summary.lower() for d in seen.values())
    products: list[Product] = []
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    for doc in seen.values():
        pid = _id("doc-", doc.name)
        known_item = _is_query(doc) and repeated[doc.summary.lower()] == 1
        # a query's own summary is kept out of its document: the body must be found from it
        text = doc.body if known_item else _words(f"{doc.summary} {doc.body}")
        cut = " ".join(f"{doc.name}. {text}".split()[:MAX_DOC_WORDS])
        products.append(Product(pid, cut, {"title": doc.name}))
        if known_item:
            qid = _id("q-", doc.name)
            queries[qid] = doc.summary.rstrip(".")
            qrels[qid] = {pid: 1}
    logger.info(
        "pydocs: %d documents, %d known-item queries from %s", len(products), len(queries), root
    )
    return LabelledSet(
        name="pydocs",
        products=products,
        queries=queries,
        qrels=qrels,
        max_grade=1,
        notes={"python": platform.python_version(), "root": str(root)},
    )
