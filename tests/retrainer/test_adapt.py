"""``flywheel adapt``: generated queries, filtered negatives, the LLM plug point and one small
end-to-end run that registers, gates and records a candidate."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from retrainer.adapt.llm import LlmGenerator, parse_queries
from retrainer.adapt.negatives import NegativeMiner
from retrainer.adapt.queries import (
    STOP_WORDS,
    QueryPair,
    first_clause,
    generate_pairs,
    title_of,
)
from services.datasets.protocol import normalise_query
from services.net import free_port
from services.products import Product
from services.settings import AdaptSettings, Settings
from services.synthetic import generate_catalog

HD_TITLES = [
    "Delta Vero 1-Handle Shower Only Faucet Trim Kit in Chrome (Valve Not Included)",
    "Whirlpool 1.9 cu. ft. Over the Range Convection Microwave in Stainless Steel with Sensor",
    "Toro Personal Pace Recycler 22 in. Variable Speed Self-Propelled Gas Lawn Mower with Briggs",
    "Valley View Industries Metal Stakes (4-Pack)",
    "Simpson Strong-Tie 12-Gauge Angle",
]


# -- queries -------------------------------------------------------------------------------


def test_queries_are_deterministic_short_and_never_the_full_title() -> None:
    products = generate_catalog(200, seed=5) + [
        Product(f"hd{i}", t, {"title": t}) for i, t in enumerate(HD_TITLES)
    ]
    first = generate_pairs(products, 400, seed=1)
    assert first == generate_pairs(products, 400, seed=1)
    assert first != generate_pairs(products, 400, seed=2)
    assert len(first) == 400 and len(set(first)) == 400
    titles = {p.id: normalise_query(title_of(p)) for p in products}
    for pair in first:
        words = pair.query.split()
        assert pair.query != titles[pair.product_id]
        assert 1 <= len(words) <= 4
        assert words[0] not in STOP_WORDS and words[-1] not in STOP_WORDS
        assert not words[-1].replace(".", "").isdigit()
    assert {p.kind for p in first} == {"head", "span", "brand"}
    excluded = {first[0].query, first[1].query}
    assert not excluded & {
        p.query for p in generate_pairs(products, 400, seed=1, exclude_queries=excluded)
    }


def test_head_phrase_ends_the_first_clause() -> None:
    assert first_clause(HD_TITLES[0])[-3:] == ["faucet", "trim", "kit"]
    assert first_clause(HD_TITLES[1])[-2:] == ["convection", "microwave"]
    # "22 in." is a size, not the preposition that ends the clause.
    assert first_clause(HD_TITLES[2])[-3:] == ["gas", "lawn", "mower"]
    assert first_clause(HD_TITLES[3])[-2:] == ["metal", "stakes"]


def test_a_one_word_title_yields_no_query() -> None:
    assert generate_pairs([Product("1", "Hammer", {"title": "Hammer"})], 5, seed=1) == []


# -- negatives -----------------------------------------------------------------------------


def _product(pid: str, title: str, brand: str, category: str) -> Product:
    return Product(pid, title, {"title": title, "brand": brand, "category": category})


NEGATIVE_CASE = [
    _product("pos", "Moen Arbor kitchen faucet with pull-down sprayer", "Moen", "plumbing"),
    # every query term: as relevant as the positive
    _product("all_terms", "Moen Arbor faucet cartridge", "Moen", "parts"),
    # the positive's brand and category
    _product("facet", "Moen kitchen sink strainer", "Moen", "plumbing"),
    # scores above the positive without every term
    _product("margin", "Arbor faucet", "Glacier", "plumbing"),
    # a true hard negative: some terms, clearly lower score, another brand
    _product("hard", "Delta Leland arbor kitchen faucet", "Delta", "plumbing"),
    _product("far1", "DEWALT cordless drill", "DEWALT", "tools"),
    _product("far2", "Ryobi leaf blower", "Ryobi", "garden"),
    _product("far3", "BEHR interior paint", "BEHR", "paint"),
]


def test_negatives_drop_false_negatives_and_fall_back_to_random() -> None:
    miner = NegativeMiner(NEGATIVE_CASE, depth=10, margin=0.1, seed=3)
    triples, stats = miner.mine([QueryPair("moen arbor faucet", "pos", "head")], per_query=1)
    assert [(t.negative_id, t.source) for t in triples] == [("hard", "bm25")]
    assert stats.dropped["all_terms"] >= 1
    assert stats.dropped["brand_category"] >= 1
    assert stats.dropped["margin"] >= 1
    # Every BM25 hit of this query holds both its terms: the negative is a random product.
    triples, stats = miner.mine([QueryPair("arbor faucet", "margin", "head")], per_query=2)
    assert stats.bm25 == 0 and stats.random == 2
    assert all(t.source == "random" for t in triples)
    assert not {t.negative_id for t in triples} & {"pos", "all_terms", "margin", "hard"}
    # A query of stop words only retrieves nothing (bm25s is not asked): random negatives,
    # and the other queries of the batch are mined as before.
    pairs = [QueryPair("the and of", "pos", "span"), QueryPair("moen arbor faucet", "pos", "head")]
    triples, stats = miner.mine(pairs, per_query=1)
    assert [(t.query, t.source) for t in triples] == [
        ("the and of", "random"),
        ("moen arbor faucet", "bm25"),
    ]
    assert stats.random == 1 and stats.bm25 == 1


def test_negatives_on_a_generated_catalog_never_hold_every_query_term() -> None:
    products = generate_catalog(150, seed=9)
    pairs = generate_pairs(products, 120, seed=4)
    miner = NegativeMiner(products, seed=4)
    triples, stats = miner.mine(pairs, per_query=1)
    assert len(triples) == len(pairs) and stats.bm25 > 0
    terms = dict(
        zip([p.query for p in pairs], miner.tokenize([p.query for p in pairs]), strict=True)
    )
    for t in triples:
        assert t.negative_id != t.positive_id
        assert not set(terms[t.query]) <= miner.doc_terms[miner.position[t.negative_id]]


# -- LLM plug point ------------------------------------------------------------------------


class FakeLlm(BaseHTTPRequestHandler):
    """A tiny OpenAI-compatible /v1/chat/completions; the server's ``mode`` picks the answer."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        server: Any = self.server
        server.requests.append((self.path, dict(self.headers), body))
        if server.mode == "slow":
            time.sleep(1.0)
        title = body["messages"][-1]["content"].split("\n")[0].removeprefix("Product title: ")
        if server.mode == "malformed":
            answer: dict[str, Any] = {"choices": []}
        else:
            content = f"1. cordless tool\n- {title}\n* Budget Cordless Tool\n2) a b c d e f g h\n"
            answer = {"choices": [{"message": {"role": "assistant", "content": content}}]}
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def fake_llm() -> Iterator[Any]:
    server: Any = ThreadingHTTPServer(("127.0.0.1", free_port()), FakeLlm)
    server.mode, server.requests = "ok", []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _llm_cfg(server: Any, **kw: Any) -> AdaptSettings:
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    return AdaptSettings(
        llm_url=url, llm_model="tiny", llm_api_key="sekret", llm_queries_per_product=2, **kw
    )


def test_parse_queries_cleans_dedupes_and_bounds() -> None:
    answer = (
        '1. Cordless Drill\n- "cordless drill"\n* DEWALT 20V drill\n\n'
        "2) one two three four five six seven"
    )
    assert parse_queries(answer, "DEWALT 20V drill", 5) == ["cordless drill"]
    assert parse_queries('["drill bits", "drill bits", 7]', "x", 5) == ["drill bits"]


def test_llm_generator_success(fake_llm: Any) -> None:
    products = generate_catalog(6, seed=1)
    generator = LlmGenerator(_llm_cfg(fake_llm))
    pairs = generator.generate(products, 8)
    generator.close()
    assert len(pairs) == 8 and {p.kind for p in pairs} == {"llm"}
    assert {p.query for p in pairs} == {"cordless tool", "budget cordless tool"}
    assert generator.stats.answered == generator.stats.asked == 4
    path, headers, body = fake_llm.requests[0]
    assert path == "/v1/chat/completions"
    assert headers["Authorization"] == "Bearer sekret" and body["model"] == "tiny"


def test_llm_malformed_answers_fall_back_to_offline_queries(fake_llm: Any) -> None:
    fake_llm.mode = "malformed"
    products = generate_catalog(6, seed=1)
    generator = LlmGenerator(_llm_cfg(fake_llm))
    pairs = generator.generate(products, 6)
    assert generator.stats.malformed == 3 and generator.stats.answered == 0
    assert pairs and all(p.kind != "llm" for p in pairs)
    assert generator.stats.fallback_pairs >= len(pairs)


def test_llm_timeouts_are_counted_and_a_dead_endpoint_is_skipped(fake_llm: Any) -> None:
    fake_llm.mode = "slow"
    products = generate_catalog(20, seed=1)
    generator = LlmGenerator(_llm_cfg(fake_llm, llm_timeout_s=0.2, llm_concurrency=1))
    pairs = generator.generate(products, 40)
    stats = generator.stats
    assert stats.timeouts == 5 and stats.skipped == 15 and stats.answered == 0
    assert len(pairs) > 20 and all(p.kind != "llm" for p in pairs)


# -- end to end ----------------------------------------------------------------------------


def test_cli_without_a_catalog_on_a_new_home_exits_2(tmp_path: Path, monkeypatch) -> None:
    from flywheel_cli.main import app

    monkeypatch.setenv("FLYWHEEL_HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(app, ["adapt", "--no-llm"])
    assert result.exit_code == 2
    assert "needs a catalog" in result.output
    result = CliRunner().invoke(app, ["adapt", "--llm"])
    assert result.exit_code == 2 and "FLYWHEEL_ADAPT__LLM_URL" in result.output


@pytest.mark.slow
def test_adapt_registers_a_gated_candidate_with_its_card(tmp_path: Path) -> None:
    from retrainer.adapt.run import adapt_catalog
    from services.registry import ModelRegistry

    settings = Settings(home=tmp_path / "home")
    settings.adapt.pairs = 48
    settings.adapt.forgetting_products = 60
    settings.retrain.guard_queries = 20
    settings.train.batch_size = 16
    settings.train.max_query_tokens = 16
    settings.train.max_doc_tokens = 32
    products = generate_catalog(40, seed=21)
    stages: set[str] = set()
    outcome = adapt_catalog(
        settings, products, use_llm=False, progress=lambda s, d, t: stages.add(s)
    )
    assert {"bootstrap", "generate", "negatives", "train", "index", "gate"} <= stages
    assert outcome.version == "v2" and outcome.status in {"canary", "rejected"}
    registry = ModelRegistry(settings.registry_dir)
    card = registry.card("v2")
    assert card.source == "adapt:catalog" and card.parent == "v1"
    assert card.training["generator"] == "offline" and card.training["seed"] == 42
    assert card.training["pairs"]["generated"] == 48
    assert card.training["heldout_products"] == 8  # 20% of 40: the catalog guard's products
    assert card.training["result"]["steps"] == 3
    assert card.gate is not None
    assert [c.name for c in card.gate.checks] == ["guard", "forgetting"]
    assert outcome.guard.keys() == {"production", "candidate", "bm25"}
    assert outcome.report is not None and outcome.report.is_file()
    pointers = registry.pointers()
    assert pointers.production == "v1"
    assert pointers.canary == ("v2" if outcome.status == "canary" else None)


@pytest.mark.slow
def test_index_adapt_on_a_new_home_then_refused_on_one_that_serves(
    tmp_path: Path, monkeypatch
) -> None:
    from flywheel_cli.main import app
    from services.registry import ModelRegistry

    home = tmp_path / "home"
    catalog = tmp_path / "catalog.jsonl"
    catalog.write_text(
        "".join(json.dumps({"id": p.id, "title": p.text}) + "\n" for p in generate_catalog(40))
    )
    for key, value in {
        "HOME": str(home),
        "ADAPT__PAIRS": "48",
        "ADAPT__FORGETTING_PRODUCTS": "60",
        "RETRAIN__GUARD_QUERIES": "20",
        "TRAIN__BATCH_SIZE": "16",
    }.items():
        monkeypatch.setenv(f"FLYWHEEL_{key}", value)
    result = CliRunner().invoke(app, ["index", "--catalog", str(catalog), "--adapt"])
    assert result.exit_code == 0, result.output
    assert "indexed 40 products with v1" in result.output
    registry = ModelRegistry(home / "registry")
    card = registry.card("v2")
    assert card.source == "adapt:catalog" and card.gate is not None
    # promoted at once when its gate passed (a new home has no shoppers for a canary)
    assert registry.pointers().production == ("v2" if card.gate.passed else "v1")
    assert registry.pointers().canary is None
    again = CliRunner().invoke(app, ["index", "--catalog", str(catalog), "--adapt"])
    assert again.exit_code == 2 and "`flywheel adapt`" in again.output
    assert registry.versions() == ["v1", "v2"]  # refused before indexing anything
