"""Hot swap: refresh() follows the registry, canary routing, failed loads, admin endpoints.

v2 is v1's weights published again (an identical encoder is enough here) with a different
index: v1 indexes the odd catalog positions, v2 the even ones, so every result list shows
which index served it.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from qdrant_client import QdrantClient

from encoder_server.app import create_app
from encoder_server.holder import LoadedModel, ModelHolder
from services.decisions import GateDecision
from services.events import MemorySink
from services.index.server import QdrantServerIndex
from services.indexing import index_products
from services.metrics import registry_for
from services.registry import CARD, ONNX_FILE, ModelCard, ModelRegistry, Pointers
from services.settings import GatePolicy, Settings
from services.synthetic import generate_catalog
from tests.conftest import IndexedHome

pytestmark = pytest.mark.slow

QUERIES = ["cordless drill", "paint", "garden hose", "faucet", "led bulb", "ladder"]


@dataclass(frozen=True)
class TwoVersions:
    """A home with v1 (odd products) in production and v2 (even products) registered."""

    settings: Settings
    ids: dict[str, set[str]]


def _link_big(src: str, dst: str) -> object:
    """Hard-link model weights (never changed in place), copy everything else."""
    if Path(src).stat().st_size > 1 << 20:
        os.link(src, dst)
        return dst
    return shutil.copy2(src, dst)


def publish_copy(registry: ModelRegistry, of: str = "v1", gated: bool = True) -> ModelCard:
    """Publish ``of``'s files again as the next version (same encoder, cheap); ``gated``:
    with a passed gate decision, so it may be promoted."""
    source = registry.card(of)
    with registry.stage() as staged:
        shutil.copytree(registry.path(of), staged, dirs_exist_ok=True, copy_function=_link_big)
        (staged / CARD).unlink()
        card = ModelCard(
            version=registry.next_version(),
            parent=of,
            source=f"copy of {of}",
            max_query_tokens=source.max_query_tokens,
            max_doc_tokens=source.max_doc_tokens,
        )
        card = registry.publish(staged, card)
    if gated:
        decision = GateDecision(
            passed=True,
            reasons=["a copy of its parent"],
            production=of,
            candidate=card.version,
            policy=GatePolicy(),
        )
        card = registry.record_gate(card.version, decision)
    return card


def publish_broken(settings: Settings, how: Literal["encoder", "index"]) -> str:
    """A gated copy of v1 with a complete index (so the registry lets it serve), then broken
    as a disk or a person can break it later: its ONNX file changed, or its shard deleted."""
    registry = ModelRegistry(settings.registry_dir)
    version = publish_copy(registry).version
    index_products(settings, version, generate_catalog(8, seed=5)).close()
    if how == "encoder":
        onnx = registry.path(version) / ONNX_FILE
        onnx.unlink()  # break the hard link before writing
        onnx.write_bytes(b"not the published encoder")
    else:
        shutil.rmtree(settings.index_dir / version)
    return version


def make_two_version_home(indexed_home: IndexedHome, home: Path) -> TwoVersions:
    """Copy the session home's registry (its Edge shards stay with it) and build both indexes."""
    shutil.copytree(indexed_home.settings.registry_dir, home / "registry", copy_function=_link_big)
    settings = Settings(home=home)
    registry = ModelRegistry(settings.registry_dir)
    v2 = publish_copy(registry).version
    products = indexed_home.products
    halves = {"v1": products[1::2], "v2": products[0::2]}
    registry.write_pointers(Pointers())  # a serving index is never rebuilt in place
    for version, subset in halves.items():
        index_products(settings, version, subset).close()
    registry.set_production("v1")
    assert v2 == "v2" and registry.pointers().production == "v1"
    return TwoVersions(settings, {v: {p.id for p in subset} for v, subset in halves.items()})


def copy_home(template: TwoVersions, home: Path) -> TwoVersions:
    shutil.copytree(template.settings.home, home, copy_function=_link_big)
    return TwoVersions(Settings(home=home), template.ids)


@pytest.fixture(scope="module")
def template(indexed_home: IndexedHome, tmp_path_factory: pytest.TempPathFactory) -> TwoVersions:
    return make_two_version_home(indexed_home, tmp_path_factory.mktemp("two-versions"))


@pytest.fixture
def home(template: TwoVersions, tmp_path: Path) -> TwoVersions:
    return copy_home(template, tmp_path / "home")


@pytest.fixture
def holder(home: TwoVersions) -> Iterator[ModelHolder]:
    model_holder = ModelHolder(home.settings)
    model_holder.load()
    yield model_holder
    model_holder.close()


def served_ids(model: LoadedModel) -> set[str]:
    found: set[str] = set()
    for q in QUERIES:
        found.update(h.product_id for h in model.index.search(model.encoder.encode_query(q)))
    return found


def serving_in_build_info() -> str:
    """The model_version label of flywheel_build_info on encoder_server's /metrics."""
    (family,) = (f for f in registry_for("search").collect() if f.name == "flywheel_build")
    (sample,) = family.samples
    return sample.labels["model_version"]


def test_refresh_switches_production_and_back(holder: ModelHolder, home: TwoVersions) -> None:
    assert holder.routing is not None and holder.routing.production.version == "v1"
    assert served_ids(holder.routing.production) <= home.ids["v1"]
    assert holder.refresh() is False  # nothing changed
    holder.registry.promote("v2")
    assert holder.refresh() is True
    assert holder.routing.production.version == "v2"
    assert served_ids(holder.routing.production) <= home.ids["v2"]
    assert holder.open_versions() == ["v2"]  # no request held v1: released at once
    assert serving_in_build_info() == "v2"
    holder.registry.rollback()
    assert holder.refresh() is True  # v1's Edge shard was really closed: it opens again
    assert holder.routing.production.version == "v1"
    assert serving_in_build_info() == "v1"
    assert holder.last_error is None


def test_old_models_stay_open_until_requests_that_may_use_them_finish(
    holder: ModelHolder,
) -> None:
    with holder.lease() as old:
        assert old is not None
        holder.registry.promote("v2")
        assert holder.refresh() is True
        assert holder.open_versions() == ["v1", "v2"]
        with holder.lease() as new:  # started after the swap: cannot see v1
            assert new is not None and new.production.version == "v2"
            assert served_ids(old.production)  # v1 still answers
            holder.registry.rollback()
            holder.refresh()  # v1 comes back: the open handle is reused, not reopened
            assert holder.routing is not None and holder.routing.production is old.production
        # `new` has finished, but `old` was pinned before v2 stopped serving, and a request
        # pinned then may have read v2's routing: v2 waits for it (a conservative rule).
        assert holder.open_versions() == ["v1", "v2"]
    assert holder.open_versions() == ["v1"]


def test_canary_routing_by_session_hash(holder: ModelHolder, home: TwoVersions) -> None:
    holder.registry.set_canary("v2", 0.3)
    assert holder.refresh() is True
    routing = holder.routing
    assert routing is not None and routing.canary is not None
    arms = {f"s{i}": routing.route(f"s{i}") for i in range(1000)}
    canary = [s for s, (model, arm) in arms.items() if arm == "canary"]
    assert 0.25 < len(canary) / 1000 < 0.35
    assert all(arms[s][0].version == "v2" for s in canary)
    assert all(routing.route(s) == arms[s] for s in list(arms)[:50])  # stable per session
    assert routing.route(None)[1] == "production"
    assert served_ids(routing.canary) <= home.ids["v2"]
    holder.registry.clear_canary()
    assert holder.refresh() is True
    assert holder.routing is not None and holder.routing.canary is None
    assert holder.open_versions() == ["v1"]


def swaps(outcome: str) -> float:
    value = registry_for("search").get_sample_value(
        "flywheel_model_swaps_total", {"outcome": outcome}
    )
    return value or 0.0


def test_failed_load_keeps_the_old_routing(holder: ModelHolder) -> None:
    registry = holder.registry
    tampered = publish_broken(holder.settings, "encoder")  # v3: a changed ONNX file
    failed_before = swaps("failed")
    registry.promote(tampered)
    assert holder.refresh() is False
    assert holder.routing is not None and holder.routing.production.version == "v1"
    assert holder.last_error is not None and "does not match its card" in holder.last_error
    assert "Still serving production v1" in holder.last_error
    assert swaps("failed") == failed_before + 1
    assert holder.refresh() is False and swaps("failed") == failed_before + 1  # not retried
    assert holder.refresh(force=True) is False and swaps("failed") == failed_before + 2
    no_index = publish_broken(holder.settings, "index")  # v4: its index deleted
    registry.promote(no_index)
    assert holder.refresh() is False
    assert "No search index" in (holder.last_error or "")
    assert holder.open_versions() == ["v1"]  # nothing half-loaded left open
    registry.promote("v2")
    assert holder.refresh() is True and holder.last_error is None


def test_alias_follows_production_on_a_qdrant_server(
    home: TwoVersions, monkeypatch: pytest.MonkeyPatch
) -> None:
    class SharedClientIndex(QdrantServerIndex):
        def close(self) -> None:  # the in-memory client is shared by both versions
            pass

    client = QdrantClient(location=":memory:")

    class SharedClient:
        def close(self) -> None:
            pass

        def __getattr__(self, name: str) -> Any:
            return getattr(client, name)

    for version in ("v1", "v2"):
        QdrantServerIndex.create(client, "products", version, {})
    monkeypatch.setattr(
        "encoder_server.holder.open_index",
        lambda settings, version: SharedClientIndex(client, "products", version),
    )
    # The store moves the alias with a client of its own: the same in-memory server.
    monkeypatch.setattr("services.index.store.server_client", lambda settings: SharedClient())
    home.settings.qdrant.url = "http://qdrant.invalid:6333"

    def alias() -> str:
        return {a.alias_name: a.collection_name for a in client.get_aliases().aliases}["products"]

    model_holder = ModelHolder(home.settings)
    model_holder.load()
    assert alias() == "products__v1"
    model_holder.registry.set_canary("v2", 0.5)
    model_holder.refresh()
    assert alias() == "products__v1"  # a canary is not production
    model_holder.registry.promote()
    model_holder.refresh()
    assert alias() == "products__v2"
    model_holder.close()


def admin_app(home: TwoVersions, token: str | None) -> TestClient:
    home.settings.server.admin_token = SecretStr(token) if token else None
    home.settings.server.registry_poll_s = 0.1
    return TestClient(create_app(home.settings, sink=MemorySink()))


def test_admin_endpoints_are_off_without_a_token(home: TwoVersions) -> None:
    with admin_app(home, None) as client:
        response = client.post("/admin/promote", params={"version": "v2"})
        assert response.status_code == 403
        assert "FLYWHEEL_SERVER__ADMIN_TOKEN" in response.json()["message"]
        assert client.get("/admin/models").status_code == 403  # shows sources and errors
    assert ModelRegistry(home.settings.registry_dir).pointers().production == "v1"


def test_admin_endpoints_with_a_token(home: TwoVersions) -> None:
    right = {"Authorization": "Bearer s3cret"}
    with admin_app(home, "s3cret") as client:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret"}):
            response = client.post("/admin/rollback", headers=headers)
            assert response.status_code == 401, headers
            assert response.headers["www-authenticate"] == "Bearer"
        promoted = client.post("/admin/promote", params={"version": "v2"}, headers=right)
        assert promoted.status_code == 200, promoted.text
        body = promoted.json()
        assert body["pointers"]["production"] == "v2" and body["pointers"]["history"] == ["v1"]
        assert body["serving"] == [{"version": "v2", "arm": "production", "products": 200}]
        hits = client.get("/search", params={"q": "drill", "k": 20}).json()
        assert hits["model_version"] == "v2"
        assert {r["id"] for r in hits["results"]} <= home.ids["v2"]
        canary = client.post(
            "/admin/canary", params={"version": "v1", "fraction": 0.5}, headers=right
        )
        assert canary.status_code == 200 and len(canary.json()["serving"]) == 2
        # Compare-and-swap: a stop decided on another canary is refused, and nothing changes.
        stale = client.delete("/admin/canary", params={"expect_canary": "v2"}, headers=right)
        assert stale.status_code == 409 and stale.json()["error"] == "pointers_changed"
        assert client.get("/admin/models", headers=right).json()["pointers"]["canary"] == "v1"
        stopped = client.delete("/admin/canary", params={"expect_canary": "v1"}, headers=right)
        assert stopped.json()["pointers"]["canary"] is None
        unknown = client.post("/admin/promote", params={"version": "v9"}, headers=right)
        assert unknown.status_code == 400 and "v9" in unknown.json()["message"]
        rolled = client.post("/admin/rollback", headers=right).json()
        assert rolled["serving"][0]["version"] == "v1"
        models = client.get("/admin/models", headers=right).json()
        roles = {v["version"]: v["role"] for v in models["versions"]}
        assert roles == {"v1": "production", "v2": ""}
        assert client.post("/admin/reload", headers=right).status_code == 200
        events = ModelRegistry(home.settings.registry_dir).events()
        assert [e["action"] for e in events[-4:]] == [
            "promote",
            "canary",
            "clear_canary",
            "rollback",
        ]
        assert events[-1]["actor"].startswith("admin-api:")
        registry = ModelRegistry(home.settings.registry_dir)
        unindexed = publish_copy(registry).version  # the registry refuses it outright
        refused = client.post("/admin/promote", params={"version": unindexed}, headers=right)
        assert refused.status_code == 400 and "no complete search index" in refused.text
        broken = publish_broken(home.settings, "index")  # the registry lets it serve
        refused = client.post("/admin/promote", params={"version": broken}, headers=right)
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"] == "load_failed"
        assert "Still serving production v1" in refused.json()["message"]
        assert client.get("/search", params={"q": "drill"}).json()["model_version"] == "v1"
        paths = client.get("/openapi.json").json()["paths"]
        promote_doc = paths["/admin/promote"]["post"]
        assert promote_doc["responses"]["401"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ErrorResponse"
        }
        assert "security" in promote_doc


def test_poller_swaps_and_readyz_reports_a_failed_load(home: TwoVersions) -> None:
    registry = ModelRegistry(home.settings.registry_dir)
    with admin_app(home, "s3cret") as client:
        registry.promote("v2")
        deadline = time.monotonic() + 10
        while client.get("/readyz").json()["models"][0]["version"] != "v2":
            assert time.monotonic() < deadline, "the poller did not pick up v2"
            time.sleep(0.05)
        registry.promote(publish_broken(home.settings, "index"))  # v3's index is gone
        deadline = time.monotonic() + 10
        while not (ready := client.get("/readyz")).json()["reason"]:
            assert time.monotonic() < deadline, "the failed load was not reported"
            time.sleep(0.05)
        assert ready.status_code == 200 and ready.json()["ready"] is True
        assert ready.json()["reason_code"] == "refresh_failed"  # the text is for admins only
        models = client.get("/admin/models", headers={"Authorization": "Bearer s3cret"}).json()
        assert "No search index for version 'v3'" in models["last_error"]
        assert client.get("/search", params={"q": "drill"}).json()["model_version"] == "v2"


def test_a_blank_admin_token_turns_admin_off() -> None:
    from services.settings import ServerSettings

    assert ServerSettings(admin_token="").admin_token is None
    assert ServerSettings(admin_token="  ").admin_token is None
    token = ServerSettings(admin_token="s3cret").admin_token
    assert token is not None and token.get_secret_value() == "s3cret"
