"""Labelled-set adapters (Home Depot, ESCI, WANDS, qrels), the sampling protocol and the loader."""

from __future__ import annotations

import csv
import json
import random
import time
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from services.datasets import loader
from services.datasets.base import LabelledSet
from services.datasets.esci import EXAMPLES, PRODUCTS, load_esci
from services.datasets.homedepot import grade, load_homedepot
from services.datasets.loader import load_dataset
from services.datasets.protocol import normalise_query, query_id, sample_queries
from services.datasets.qrels import load_qrels_dataset
from services.datasets.wands import load_wands
from services.errors import CatalogError, DatasetError
from services.products import Product
from services.synthetic import generate_catalog

REAL_HOMEDEPOT = Path(__file__).resolve().parents[2].parent / "shared/data/homedepot/train.csv"

# --- Home Depot -----------------------------------------------------------------------------

HD_ROWS = [
    # id, product_uid, product_title, search_term, relevance
    (2, 100001, "Simpson Strong-Tie 12-Gauge Angle", "angle bracket", 3),
    (3, 100001, "Simpson Strong-Tie 12-Gauge Angle", "l bracket", 2.5),
    (9, 100002, "BEHR Premium Textured DeckOver 1-gal.", "deck over", 1.33),
    (16, 100005, 'Delta Vero 1-Handle Shower Faucet, "Chrome"', "Angle  Bracket ", 1.5),
    (17, 100005, "Delta Vero (other title)", "rain shower head", 2.67),
    (18, 100002, "BEHR Premium Textured DeckOver 1-gal.", "deck over", 2),
    (20, 100009, "Hampton Bay Ceiling Fan", "fan", 1),
]


def _write_homedepot(path: Path, rows: Sequence[tuple[object, ...]] = HD_ROWS) -> Path:
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, quoting=csv.QUOTE_NONNUMERIC)
        writer.writerow(["id", "product_uid", "product_title", "search_term", "relevance"])
        writer.writerows(rows)
    return path


def test_homedepot_grade_mapping() -> None:
    # round() is Python's (half to even): 2.5 -> 4.5 -> 4 and 1.5 -> 1.5 -> 2.
    expected = {1: 0, 1.25: 1, 1.33: 1, 1.5: 2, 1.67: 2, 2: 3, 2.33: 4, 2.5: 4, 2.67: 5, 3: 6}
    assert {r: grade(r) for r in expected} == expected


def test_load_homedepot(tmp_path: Path) -> None:
    ls = load_homedepot(_write_homedepot(tmp_path / "train.csv"))
    assert ls.name == "homedepot"
    assert ls.max_grade == 6
    assert ls.products == [
        Product(
            "100001",
            "Simpson Strong-Tie 12-Gauge Angle",
            {"title": "Simpson Strong-Tie 12-Gauge Angle"},
        ),
        Product(
            "100002",
            "BEHR Premium Textured DeckOver 1-gal.",
            {"title": "BEHR Premium Textured DeckOver 1-gal."},
        ),
        Product(
            "100005",
            'Delta Vero 1-Handle Shower Faucet, "Chrome"',
            {"title": 'Delta Vero 1-Handle Shower Faucet, "Chrome"'},
        ),
        Product("100009", "Hampton Bay Ceiling Fan", {"title": "Hampton Bay Ceiling Fan"}),
    ]
    angle = query_id("angle bracket")
    assert query_id("Angle  Bracket ") == angle
    assert len(angle) == 16
    assert ls.queries == {
        angle: "angle bracket",
        query_id("l bracket"): "l bracket",
        query_id("deck over"): "deck over",
        query_id("rain shower head"): "rain shower head",
        query_id("fan"): "fan",
    }
    assert ls.qrels == {
        angle: {"100001": 6, "100005": 2},
        query_id("l bracket"): {"100001": 4},
        query_id("deck over"): {"100002": 3},  # rated 1.33 (1) and 2 (3): the max wins
        query_id("rain shower head"): {"100005": 5},
        query_id("fan"): {"100009": 0},
    }


def test_homedepot_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        load_homedepot(tmp_path / "nope.csv")
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("id,uid,title\n1,2,x\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="columns found: id, uid, title"):
        load_homedepot(wrong)
    with pytest.raises(DatasetError, match="no rows"):
        load_homedepot(_write_homedepot(tmp_path / "header.csv", []))


# --- sampling protocol ----------------------------------------------------------------------


def _toy_set() -> LabelledSet:
    qrels = {f"q{i:02d}": {f"p{j}": 1 for j in range(i % 4)} for i in range(20)}
    return LabelledSet("toy", [], {q: q for q in qrels}, qrels, 1)


def test_sample_queries_protocol() -> None:
    ls = _toy_set()
    eligible = sorted(q for q, judged in ls.qrels.items() if len(judged) >= 2)
    assert len(eligible) == 10
    picked = sample_queries(ls, 4)
    assert picked == random.Random(42).sample(eligible, 4)
    assert picked == sample_queries(ls, 4)
    assert sample_queries(ls, 4, seed=7) == random.Random(7).sample(eligible, 4)
    assert len(sample_queries(ls, 15, min_judged=1)) == 15
    assert normalise_query("  Deck\tOVER  ") == "deck over"


def test_sample_queries_at_most_is_a_maximum() -> None:
    ls = _toy_set()
    eligible = sorted(q for q, judged in ls.qrels.items() if len(judged) >= 2)
    # Where enough queries exist, at_most draws exactly what n draws.
    assert sample_queries(ls, at_most=4) == sample_queries(ls, 4)
    assert sample_queries(ls, at_most=4, seed=7) == sample_queries(ls, 4, seed=7)
    everything = sample_queries(ls, at_most=2000)
    assert len(everything) == 10 and sorted(everything) == eligible
    assert everything == sample_queries(ls, 10)  # the same draw, in the same order
    with pytest.raises(DatasetError, match="at most 0"):
        sample_queries(ls, at_most=0)
    with pytest.raises(DatasetError, match="exactly one of n and at_most"):
        sample_queries(ls, 3, at_most=3)
    with pytest.raises(DatasetError, match="no query of toy has at least 9 judged"):
        sample_queries(ls, at_most=5, min_judged=9)


def test_restrict_keeps_the_corpus_and_only_the_given_queries() -> None:
    products = generate_catalog(30, seed=1)
    ls = LabelledSet("toy", products, {"a": "drill", "b": "saw", "c": "hinge"}, {}, 2)
    ls.qrels.update({"a": {products[0].id: 2}, "c": {products[1].id: 1}})
    part = ls.restrict(["c", "b", "c"], name="toy:heldout")
    assert part.name == "toy:heldout" and part.products == products and part.max_grade == 2
    assert part.queries == {"c": "hinge", "b": "saw"}
    assert part.qrels == {"c": {products[1].id: 1}}  # b has no judgments
    assert ls.restrict([]).queries == {} and ls.restrict(["a"]).name == "toy"
    assert len(ls.queries) == 3  # the original is untouched
    with pytest.raises(DatasetError, match=r"1 query ids are not in toy, e\.g\. 'zz'"):
        ls.restrict(["a", "zz"])


def test_sample_queries_too_many() -> None:
    with pytest.raises(DatasetError, match="10 queries have at least 2 judged"):
        sample_queries(_toy_set(), 11)
    with pytest.raises(DatasetError):
        sample_queries(_toy_set(), 0)


# --- ESCI -----------------------------------------------------------------------------------


def _write_esci(root: Path) -> Path:
    # (example_id, query, query_id, product_id, locale, label, small, large, split)
    examples = [
        (0, "revent 80 cfm", 0, "B000MOO21W", "us", "I", 1, 1, "test"),
        (1, "revent 80 cfm", 0, "B07X3Y6B1V", "us", "E", 1, 1, "test"),
        (2, "revent 80 cfm", 0, "B07WDM7MQQ", "us", "S", 1, 1, "test"),
        (3, "revent 80 cfm", 0, "B000NOTITL", "us", "C", 1, 1, "test"),
        (4, "bath fan", 1, "B07X3Y6B1V", "us", "C", 0, 1, "test"),
        (5, "ventilador", 2, "B07X3Y6B1V", "es", "E", 1, 1, "test"),
        (6, "!qscreen fence", 3, "B07WDM7MQQ", "us", "E", 1, 1, "train"),
    ]
    names = [
        "example_id",
        "query",
        "query_id",
        "product_id",
        "product_locale",
        "esci_label",
        "small_version",
        "large_version",
        "split",
    ]
    pq.write_table(
        pa.table({name: [row[i] for row in examples] for i, name in enumerate(names)}),
        root / EXAMPLES,
    )
    products = {
        "product_id": [
            "B000MOO21W",
            "B07X3Y6B1V",
            "B07WDM7MQQ",
            "B000NOTITL",
            "B07X3Y6B1V",
            "B0UNUSED",
        ],
        "product_title": [
            "Panasonic FV-20VQ3 fan",
            "Delta BreezSignature",
            "Broan 678",
            None,
            "Ventilador Delta",
            "x",
        ],
        "product_description": [None, "quiet", None, None, None, None],
        "product_bullet_point": [None] * 6,
        "product_brand": ["Panasonic", "DELTA", None, "Acme", "DELTA", "y"],
        "product_color": ["White", None, "White", None, "Blanco", None],
        "product_locale": ["us", "us", "us", "us", "es", "us"],
    }
    pq.write_table(pa.table(products), root / PRODUCTS)
    return root


def test_load_esci(tmp_path: Path) -> None:
    ls = load_esci(_write_esci(tmp_path))
    assert ls.name == "esci-us-test-small"
    assert ls.max_grade == 3
    assert ls.queries == {"0": "revent 80 cfm"}
    # The product without a title is dropped with its judgment.
    assert ls.qrels == {"0": {"B000MOO21W": 0, "B07X3Y6B1V": 3, "B07WDM7MQQ": 2}}
    assert sorted(ls.products, key=lambda p: p.id) == [
        Product(
            "B000MOO21W",
            "Panasonic FV-20VQ3 fan",
            {"title": "Panasonic FV-20VQ3 fan", "brand": "Panasonic", "color": "White"},
        ),
        Product("B07WDM7MQQ", "Broan 678", {"title": "Broan 678", "color": "White"}),
        Product(
            "B07X3Y6B1V",
            "Delta BreezSignature",
            {"title": "Delta BreezSignature", "brand": "DELTA"},
        ),
    ]
    assert ls.notes["dropped"] == "1"


def test_load_esci_options(tmp_path: Path) -> None:
    root = _write_esci(tmp_path)
    large = load_esci(root, small_version=False)
    assert large.qrels["1"] == {"B07X3Y6B1V": 1}
    es = load_esci(root, locale="es")
    assert es.products == [
        Product(
            "B07X3Y6B1V",
            "Ventilador Delta",
            {"title": "Ventilador Delta", "brand": "DELTA", "color": "Blanco"},
        )
    ]
    assert es.qrels == {"2": {"B07X3Y6B1V": 3}}
    assert load_esci(root, split="train").queries == {"3": "!qscreen fence"}
    with pytest.raises(DatasetError, match="no ESCI examples"):
        load_esci(root, locale="jp")


def test_esci_missing_files(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=f"{EXAMPLES} not found"):
        load_esci(tmp_path)


# --- WANDS ----------------------------------------------------------------------------------

WANDS_PRODUCTS = (
    "product_id\tproduct_name\tproduct_class\tcategory hierarchy\tproduct_description\t"
    "product_features\trating_count\taverage_rating\treview_count\n"
    "0\tsolid wood platform bed\tBeds\tFurniture / Bedroom Furniture / Beds\tgood , deep sleep\t"
    "overallwidth-sidetoside:64.7|color:brown\t15.0\t4.5\t15.0\n"
    '1\t"fawkes 36"" blue vanity"\t\tBath / Vanities\t\t\t\t\t\n'
    "2\tall-clad 7 qt . slow cooker\tSlow Cookers|Crock Pots\t\tcreate, meals\tcapacity:7\t"
    "100.0\t2.0\t98.0\n"
)
WANDS_QUERIES = "query_id\tquery\tquery_class\n0\tsalon chair\tMassage Chairs\n1\tblue vanity\t\n"
WANDS_LABELS = (
    "id\tquery_id\tproduct_id\tlabel\n"
    "0\t0\t0\tIrrelevant\n1\t1\t1\tExact\n2\t1\t2\tPartial\n3\t1\t2\tIrrelevant\n"
)


def _write_wands(root: Path, labels: str = WANDS_LABELS) -> Path:
    for name, text in (("product", WANDS_PRODUCTS), ("query", WANDS_QUERIES), ("label", labels)):
        (root / f"{name}.csv").write_text(text, encoding="utf-8")
    return root


def test_load_wands(tmp_path: Path) -> None:
    ls = load_wands(_write_wands(tmp_path))
    assert ls.name == "wands"
    assert ls.max_grade == 2
    assert ls.products == [
        Product(
            "0",
            "solid wood platform bed",
            {
                "title": "solid wood platform bed",
                "category": "Beds",
                "category_hierarchy": "Furniture / Bedroom Furniture / Beds",
                "rating_count": 15.0,
                "average_rating": 4.5,
                "review_count": 15.0,
            },
        ),
        Product(
            "1",
            'fawkes 36" blue vanity',
            {"title": 'fawkes 36" blue vanity', "category_hierarchy": "Bath / Vanities"},
        ),
        Product(
            "2",
            "all-clad 7 qt . slow cooker",
            {
                "title": "all-clad 7 qt . slow cooker",
                "category": "Slow Cookers|Crock Pots",
                "rating_count": 100.0,
                "average_rating": 2.0,
                "review_count": 98.0,
            },
        ),
    ]
    assert ls.queries == {"0": "salon chair", "1": "blue vanity"}
    assert ls.qrels == {"0": {"0": 0}, "1": {"1": 2, "2": 1}}


def test_wands_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"product\.csv not found"):
        load_wands(tmp_path)
    _write_wands(tmp_path, "id\tquery_id\tproduct_id\tlabel\n0\t0\t0\tGood\n")
    with pytest.raises(DatasetError, match="unknown label 'Good'"):
        load_wands(tmp_path)
    (tmp_path / "query.csv").write_text("query_id,query\n0,chair\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"columns found: query_id,query\. WANDS files are tab"):
        load_wands(tmp_path)


# --- generic qrels --------------------------------------------------------------------------


def test_qrels_beir_layout(tmp_path: Path) -> None:
    corpus = [
        {"_id": "d1", "title": "Red Mug", "text": "ceramic 12 oz"},
        {"_id": "d2", "title": "", "text": "blue plate"},
    ]
    (tmp_path / "corpus.jsonl").write_text("\n".join(map(json.dumps, corpus)), encoding="utf-8")
    queries = [{"_id": "q1", "text": "red  mug"}, {"_id": "q2", "text": "plate"}]
    (tmp_path / "queries.jsonl").write_text("\n".join(map(json.dumps, queries)), encoding="utf-8")
    (tmp_path / "qrels").mkdir()
    (tmp_path / "qrels/test.tsv").write_text(
        "query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\td2\t0\nq2\td2\t1\nq2\td9\t1\nq9\td1\t1\n",
        encoding="utf-8",
    )
    ls = load_qrels_dataset(tmp_path)
    assert [(p.id, p.text) for p in ls.products] == [
        ("d1", "Red Mug ceramic 12 oz"),
        ("d2", "blue plate"),
    ]
    assert ls.queries == {"q1": "red mug", "q2": "plate"}
    assert ls.qrels == {"q1": {"d1": 2, "d2": 0}, "q2": {"d2": 1}}
    assert ls.max_grade == 2
    assert ls.notes["dropped"] == "2"


def test_qrels_trec_layout_with_explicit_paths(tmp_path: Path) -> None:
    (tmp_path / "products.csv").write_text("sku,title\nA1,Hammer\nB2,Saw\n", encoding="utf-8")
    (tmp_path / "q.tsv").write_text("qid\ttext\n101\thand saw\n102\thammer\n", encoding="utf-8")
    (tmp_path / "judgments.txt").write_text(
        "101 0 B2 3\n101 0 A1 -1\n102 Q0 A1 1\n102 0 A1 2\n", encoding="utf-8"
    )
    ls = load_qrels_dataset(
        corpus=tmp_path / "products.csv",
        queries=tmp_path / "q.tsv",
        qrels=tmp_path / "judgments.txt",
    )
    assert ls.queries == {"101": "hand saw", "102": "hammer"}
    assert ls.qrels == {"101": {"B2": 3, "A1": 0}, "102": {"A1": 2}}
    assert ls.max_grade == 3


def test_qrels_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"corpus\.jsonl not found"):
        load_qrels_dataset(tmp_path)
    (tmp_path / "corpus.csv").write_text("id,title\n1,a\n", encoding="utf-8")
    (tmp_path / "queries.tsv").write_text("1\tq\n", encoding="utf-8")
    (tmp_path / "qrels.tsv").write_text("1 1\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"qrels\.tsv:1 has 2 fields"):
        load_qrels_dataset(tmp_path)
    (tmp_path / "qrels.tsv").write_text("7 0 1 1\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="no judgment matches"):
        load_qrels_dataset(tmp_path)
    (tmp_path / "corpus.csv").write_text("code,label\n1,a\n", encoding="utf-8")
    with pytest.raises(CatalogError, match="columns found: code, label"):
        load_qrels_dataset(tmp_path)


# --- loader ---------------------------------------------------------------------------------


def test_load_dataset_specs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hd = _write_homedepot(tmp_path / "train.csv")
    assert load_dataset(f"homedepot:{hd}").name == "homedepot"
    assert load_dataset(f"wands:{_write_wands(tmp_path)}").name == "wands"
    (tmp_path / "data/homedepot").mkdir(parents=True)
    _write_homedepot(tmp_path / "data/homedepot/train.csv", HD_ROWS[:1])
    monkeypatch.setenv(loader.DATA_DIR_ENV, str(tmp_path / "data"))
    assert len(load_dataset("homedepot").queries) == 1


def test_load_dataset_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DatasetError, match="use one of homedepot, esci, wands, qrels"):
        load_dataset("msmarco:/tmp/x")
    monkeypatch.setattr(loader, "data_dirs", lambda: [tmp_path])
    with pytest.raises(DatasetError, match="pass 'homedepot:PATH' or set FLYWHEEL_DATA_DIR"):
        load_dataset("homedepot")
    with pytest.raises(DatasetError, match="this name has no default"):
        load_dataset("qrels:")


# --- the real Home Depot file ---------------------------------------------------------------


@pytest.mark.data
def test_real_homedepot() -> None:
    if not REAL_HOMEDEPOT.is_file():
        pytest.skip(f"Home Depot train.csv not found at {REAL_HOMEDEPOT} (../shared/data absent)")
    start = time.perf_counter()
    ls = load_homedepot(REAL_HOMEDEPOT)
    elapsed = time.perf_counter() - start
    assert len(ls.products) == 54_667
    # 11,795 distinct raw search terms; "fence  mesh" and "slide  bolt" normalise onto
    # "fence mesh" and "slide bolt", leaving 11,793 queries.
    assert len(ls.queries) == 11_793
    # 74,067 rows minus 5 (query, product) pairs rated twice.
    assert sum(len(judged) for judged in ls.qrels.values()) == 74_062
    eligible = sum(1 for judged in ls.qrels.values() if len(judged) >= 2)
    assert eligible == 10_394
    picked = sample_queries(ls, 2000)
    assert len(picked) == len(set(picked)) == 2000
    assert picked == sample_queries(ls, 2000)
    assert all(len(ls.qrels[q]) >= 2 for q in picked)
    assert elapsed < 10, f"loading took {elapsed:.1f}s"


def _write_library(root: Path) -> None:
    (root / "shop").mkdir(parents=True)
    (root / "test").mkdir()
    (root / "shop" / "__init__.py").write_text(
        '''
def measure(x):
    """Return the length of a garden hose in metres.

    The hose is unrolled on a flat surface and measured end to end with a tape.
    """


class Drill:
    """A cordless drill with two speeds and a clutch.

    Holds bits up to ten millimetres and charges from the mains in one hour flat.
    """

    def spin(self):
        """Return self.

        Spinning starts the motor at the lower speed until the trigger is fully pressed.
        """

    def _hidden(self):
        """Private helpers are not reference documentation at all.

        Nobody reads this text as part of the public documentation of the module.
        """
''',
        encoding="utf-8",
    )
    (root / "shop" / "other.py").write_text(
        '''
def again():
    """Return self.

    A second object whose summary repeats another's, so it cannot be a known item.
    """


def code():
    """word = atom / quoted-string

    A grammar rule rather than prose, so it is a document but never a query here.
    """
''',
        encoding="utf-8",
    )
    (root / "test" / "test_shop.py").write_text(
        'def test_it():\n    """Tests are not the library reference at all, ever.\n\n'
        '    This body is long enough to qualify if tests were read at all.\n    """\n',
        encoding="utf-8",
    )


def test_pydocs_known_items_from_docstring_summaries(tmp_path: Path) -> None:
    from services.datasets.loader import load_dataset
    from services.datasets.pydocs import load_pydocs

    _write_library(tmp_path)
    ls = load_dataset(f"pydocs:{tmp_path}")
    titles = {p.payload["title"]: p for p in ls.products}
    assert set(titles) == {
        "shop.measure",
        "shop.Drill",
        "shop.Drill.spin",
        "shop.other.again",
        "shop.other.code",
    }
    assert sorted(ls.queries.values()) == [
        "A cordless drill with two speeds and a clutch",
        "Return the length of a garden hose in metres",
    ]
    for qid, text in ls.queries.items():
        (pid, grade), *_ = ls.qrels[qid].items()
        doc = next(p for p in ls.products if p.id == pid)
        assert grade == 1 and len(ls.qrels[qid]) == 1
        assert text not in doc.text  # the body is what must be found from the summary
    assert "Return self" in titles["shop.Drill.spin"].text  # a document, not a query
    assert ls.max_grade == 1 and ls.notes["python"]
    assert load_pydocs(tmp_path).queries == ls.queries  # stable ids
    with pytest.raises(DatasetError, match="no documented Python source"):
        load_pydocs(tmp_path / "test" / "nothing")


def test_pydocs_default_is_this_interpreters_library() -> None:
    from services.datasets.pydocs import load_pydocs

    ls = load_pydocs()
    assert len(ls.queries) > 300 and len(ls.products) > len(ls.queries)
    assert not any(p.payload["title"].startswith(("test.", "idlelib.")) for p in ls.products)
