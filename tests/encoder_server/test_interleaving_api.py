"""GET /search with search.interleaving on: the canary bucket gets a team-draft list.

Uses test_hot_swap's two-version home: v1 indexes the odd catalog positions, v2 the even ones,
so every result shows which version's index (and encoder) served it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from encoder_server.app import create_app
from services.events import MemorySink, QueryEvent
from services.registry import ModelRegistry
from tests.conftest import IndexedHome
from tests.encoder_server.test_hot_swap import TwoVersions, copy_home, make_two_version_home

pytestmark = pytest.mark.slow

SESSIONS = [f"shopper-{i}" for i in range(24)]


@pytest.fixture(scope="module")
def template(indexed_home: IndexedHome, tmp_path_factory: pytest.TempPathFactory) -> TwoVersions:
    return make_two_version_home(indexed_home, tmp_path_factory.mktemp("interleaving"))


def _search(client: TestClient, session: str, address: str | None = None) -> dict[str, object]:
    """One search; each shopper from its own address (behind a proxy) unless ``address``."""
    forwarded = address or f"10.0.{SESSIONS.index(session) if session in SESSIONS else 0}.1"
    response = client.get(
        "/search",
        params={"q": "cordless drill", "k": 10, "session_id": session},
        headers={"x-forwarded-for": f"{forwarded}, 172.16.0.1"},
    )
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


@pytest.mark.parametrize("interleaving", [True, False])
def test_canary_bucket_gets_an_interleaved_list(
    template: TwoVersions, tmp_path: Path, interleaving: bool
) -> None:
    home = copy_home(template, tmp_path / "home")
    ModelRegistry(home.settings.registry_dir).set_canary("v2", 0.5)
    home.settings.search.interleaving = interleaving
    home.settings.server.client_address_header = "x-forwarded-for"
    home.settings.server.trusted_proxies = 2  # the shopper's proxy, then ours
    sink = MemorySink()
    with TestClient(create_app(home.settings, sink=sink)) as client:
        bodies = {s: _search(client, s) for s in SESSIONS}
    arms = {s: b["arm"] for s, b in bodies.items()}
    bucket = "interleaved" if interleaving else "canary"
    assert set(arms.values()) == {"production", bucket}  # both buckets are hit
    events = {e.session_id: e for e in sink.events if isinstance(e, QueryEvent)}
    for session, body in bodies.items():
        results = body["results"]
        assert isinstance(results, list)
        ids = [r["id"] for r in results]
        teams = [r["team"] for r in results]
        event = events[session]
        assert event.results == ids and event.arm == body["arm"]
        if body["arm"] != "interleaved":
            version = "v1" if body["arm"] == "production" else "v2"
            assert body["model_version"] == version
            assert set(ids) <= template.ids[version]
            assert teams == [None] * len(ids) and event.teams is None
            assert event.control_version is None
            continue
        assert body["model_version"] == "v2"  # the canary's list, compared with production
        assert len(ids) == 10 and len(set(ids)) == 10
        assert teams.count("v1") == teams.count("v2") == 5  # both rankings had 10 results
        for version in ("v1", "v2"):  # each result came from its own team's index
            assert {i for i, t in zip(ids, teams, strict=True) if t == version} <= template.ids[
                version
            ]
        assert event.teams == teams and event.control_version == "v1"
        assert [r["position"] for r in results] == list(range(1, 11))


def test_a_client_cannot_choose_its_arm_by_its_session_id(
    template: TwoVersions, tmp_path: Path
) -> None:
    home = copy_home(template, tmp_path / "home")
    ModelRegistry(home.settings.registry_dir).set_canary("v2", 0.5)
    home.settings.server.client_address_header = "x-forwarded-for"
    with TestClient(create_app(home.settings, sink=MemorySink())) as client:
        # One client trying many session ids, and lying about its address left of the proxy's
        # entry: one arm for all of them (the bucket is drawn by the address the proxy saw).
        arms = {
            _search(client, f"probe-{i}", address=f"198.51.100.{i}, 203.0.113.7")["arm"]
            for i in range(24)
        }
        assert len(arms) == 1
        home.settings.server.canary_unit = "session"
        arms = {_search(client, f"probe-{i}", address="203.0.113.7")["arm"] for i in range(24)}
        assert len(arms) == 2  # by session: both buckets
