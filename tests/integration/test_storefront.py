"""The storefront page in a real headless Chromium (Debian's ``chromium`` and
``chromium-driver``), on its own origin, against the real stack: embedded Kafka broker,
``flywheel serve`` with CORS, and the ingest writing DuckDB. What the browser shows and does
must land in DuckDB attributed to the query_id of the list it happened on.

The first tests need no browser: they check the storefront app itself.
"""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest
from starlette.testclient import TestClient

from feedback_ingest.service import SNAPSHOT_REQUEST, exports_dir, run_ingest, store_path
from feedback_ingest.store import latest_snapshot
from flywheel_cli.storefront import STATIC_DIR, serve_storefront, storefront_app
from services.kafka.broker import EmbeddedBroker, ensure_topics
from services.kafka.config import KafkaSettings
from services.net import free_port
from services.settings import IngestSettings, Settings
from services.snapshots import Snapshot
from tests.conftest import IndexedHome
from tests.integration.conftest import CHROMIUM, CHROMIUM_FLAGS, start_server, stop_server

CHROMEDRIVER = shutil.which("chromedriver")
FLAGS = [*CHROMIUM_FLAGS, "--window-size=1200,900"]
QUERY = "cordless drill"

browser = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="needs Debian's chromium and chromium-driver (make setup installs both)",
)


# --- the storefront app alone (fast, no browser) ---------------------------------------------


def test_storefront_app_serves_the_page_its_assets_and_the_api_base() -> None:
    with TestClient(storefront_app("http://127.0.0.1:8123/")) as client:
        page = client.get("/")
        script = client.get("/shop.js")
        style = client.get("/shop.css")
        config = client.get("/config.json")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'data-testid="search-input"' in page.text and 'src="shop.js"' in page.text
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert "/events" in script.text and "/search" in script.text
    assert style.status_code == 200 and "text/css" in style.headers["content-type"]
    assert config.json() == {"api": "http://127.0.0.1:8123"}  # trailing slash dropped
    assert config.headers["cache-control"] == "no-store"
    assert "connect-src 'self' http://127.0.0.1:8123;" in page.headers["content-security-policy"]


def test_storefront_loads_nothing_from_elsewhere() -> None:
    # A storefront that works offline: no CDN, no external font or script.
    for name in ("index.html", "shop.js", "shop.css"):
        text = (STATIC_DIR / name).read_text(encoding="utf-8")
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, name


@pytest.mark.parametrize("bad", ["127.0.0.1:8000", "ftp://host", "http://host/?x=1", ""])
def test_storefront_app_refuses_a_bad_api_base(bad: str) -> None:
    with pytest.raises(ValueError, match="api_base"):
        storefront_app(bad)


def test_serve_storefront_picks_a_free_port_and_stops() -> None:
    with serve_storefront("http://127.0.0.1:8000", port=0) as url:
        assert not url.endswith(":0")
        assert httpx.get(f"{url}/config.json", timeout=5).json() == {"api": "http://127.0.0.1:8000"}
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/config.json", timeout=2)


# --- the real stack in Chromium ----------------------------------------------------------------


class IngestThread:
    """``run_ingest`` in a thread (as ``flywheel demo`` runs it); keeps its exception."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="test-ingest", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            run_ingest(self.settings, stop=self.stop_event)
        except BaseException as exc:
            self.error = exc

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "the ingest did not stop"
        if self.error is not None:
            raise AssertionError(f"the ingest failed: {self.error!r}") from self.error


@dataclass(frozen=True)
class Stack:
    api: str
    shop: str
    settings: Settings
    ingest: IngestThread


@pytest.fixture(scope="module")
def stack(
    indexed_home: IndexedHome, broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("storefront-home")
    for part in ("registry", "index"):
        shutil.copytree(indexed_home.settings.home / part, home / part)
    suffix = uuid.uuid4().hex[:8]
    kafka = KafkaSettings(
        bootstrap_servers=broker.bootstrap_servers,
        topic=f"shop.events.{suffix}",  # a fresh topic: everything in DuckDB came from here
        dlq_topic=f"shop.dlq.{suffix}",
    )
    ensure_topics(broker.bootstrap_servers, kafka.topics())
    settings = Settings(
        home=home, kafka=kafka, ingest=IngestSettings(metrics_port=0, poll_timeout_ms=200)
    )
    api_port = free_port("127.0.0.1")
    api = f"http://127.0.0.1:{api_port}"
    with serve_storefront(api) as shop:
        # The API must know the shop's origin before it starts; the shop needs only the URL.
        with pytest.MonkeyPatch.context() as env:
            env.setenv("FLYWHEEL_SERVER__CORS_ORIGINS", f'["{shop}"]')
            env.setenv("FLYWHEEL_KAFKA__TOPIC", kafka.topic)
            env.setenv("FLYWHEEL_KAFKA__DLQ_TOPIC", kafka.dlq_topic)
            server = start_server(str(home), api_port, broker.bootstrap_servers)
        ingest = IngestThread(settings)
        try:
            yield Stack(api=api, shop=shop, settings=settings, ingest=ingest)
        finally:
            if ingest.thread.is_alive():
                ingest.stop()
            stop_server(server)


@pytest.fixture
def driver(tmp_path: Path) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    assert CHROMIUM is not None and CHROMEDRIVER is not None
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'profile'}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path: Selenium Manager is skipped and nothing is downloaded.
    service = Service(executable_path=CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log"))
    chrome = webdriver.Chrome(options=options, service=service)
    chrome.set_page_load_timeout(20)
    try:
        yield chrome
    finally:
        chrome.quit()


def by_testid(testid: str) -> tuple[str, str]:
    return ("css selector", f'[data-testid="{testid}"]')


def wait(driver: Any, condition: Any, what: str, timeout_s: float = 20) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout_s, poll_frequency=0.1).until(
        condition, message=f"timed out waiting for {what}"
    )


def open_shop_and_search(driver: Any, shop: str, query: str) -> None:
    driver.get(shop)
    wait(
        driver,
        lambda d: d.find_element("css selector", "body").get_attribute("data-ready"),
        "config",
    )
    box = driver.find_element(*by_testid("search-input"))
    box.send_keys(query)
    driver.find_element(*by_testid("search-submit")).click()


def events_settled(driver: Any, accepted: int) -> bool:
    status = driver.find_element(*by_testid("events-status"))
    return (
        status.get_attribute("data-in-flight") == "0"
        and int(status.get_attribute("data-accepted") or 0) >= accepted
    )


def stored(con: duckdb.DuckDBPyConnection, query_id: str) -> dict[str, Any]:
    """What the store holds for one served list (tables ``queries`` and ``interactions``)."""
    served = con.execute(
        "SELECT user_query, session_id, results FROM queries WHERE query_id = ?", [query_id]
    ).fetchall()
    actions = con.execute(
        "SELECT action, product_id, position, session_id FROM interactions WHERE query_id = ?",
        [query_id],
    ).fetchall()
    others = con.execute(
        "SELECT count(*) FROM interactions WHERE query_id <> ?", [query_id]
    ).fetchone()
    return {"queries": served, "interactions": sorted(actions), "elsewhere": others}


def from_snapshot(settings: Settings, query_id: str) -> dict[str, Any]:
    """Ask the running ingest for a Parquet snapshot (as ``flywheel snapshot`` does; DuckDB
    allows no reader beside the writer) and read it."""
    exports = exports_dir(settings)
    before = latest_snapshot(exports)
    exports.mkdir(parents=True, exist_ok=True)
    (exports / SNAPSHOT_REQUEST).touch()
    deadline = time.monotonic() + 60
    while (snapshot := latest_snapshot(exports)) == before:
        assert time.monotonic() < deadline, "the ingest wrote no snapshot in 60 s"
        time.sleep(0.1)
    assert snapshot is not None
    with Snapshot(snapshot).connect() as con:
        return stored(con, query_id)


@pytest.mark.integration
@pytest.mark.slow
@browser
def test_browser_events_reach_duckdb_attributed_to_the_served_list(
    stack: Stack, driver: Any
) -> None:
    open_shop_and_search(driver, stack.shop, QUERY)
    results = wait(driver, lambda d: d.find_elements(*by_testid("result")), "results")
    query_id = driver.find_element(*by_testid("results")).get_attribute("data-query-id")
    shown = [
        (r.get_attribute("data-product-id"), int(r.get_attribute("data-position"))) for r in results
    ]
    assert query_id and len(shown) >= 3
    assert [p for _, p in shown] == list(range(1, len(shown) + 1))
    wait(driver, lambda d: events_settled(d, len(shown)), "impressions to be accepted")

    clicked, carted = shown[1], shown[2]
    results[1].find_element(*by_testid("result-title")).click()
    results[2].find_element(*by_testid("add-to-cart")).click()
    wait(driver, lambda d: events_settled(d, len(shown) + 2), "click and add-to-cart")
    assert driver.find_element(*by_testid("cart-count")).text == "1"
    assert driver.current_url.rstrip("/") == stack.shop  # a click does not navigate away

    error = driver.find_element(*by_testid("error"))
    assert not error.is_displayed() and error.text == "", error.text
    meta = driver.find_element(*by_testid("meta")).text
    assert "model v1" in meta and "arm production" in meta and " ms" in meta
    session_id = driver.execute_script("return sessionStorage.getItem('flywheel.session_id')")
    assert session_id
    console = driver.get_log("browser")
    assert not [e for e in console if e["level"] == "SEVERE" or "CORS" in e["message"]], console

    session = str(session_id)
    expected = {
        "queries": [(QUERY, session, [pid for pid, _ in shown])],
        "interactions": sorted(
            [("impression", pid, pos, session) for pid, pos in shown]
            + [("click", *clicked, session), ("add_to_cart", *carted, session)]
        ),
        "elsewhere": (0,),
    }
    deadline = time.monotonic() + 30
    seen = from_snapshot(stack.settings, query_id)
    while seen != expected and time.monotonic() < deadline:
        time.sleep(0.3)
        seen = from_snapshot(stack.settings, query_id)
    assert seen == expected

    # And in the DuckDB file itself, once the ingest has let go of it.
    stack.ingest.stop()
    con = duckdb.connect(str(store_path(stack.settings)), read_only=True)
    try:
        final = stored(con, query_id)
    finally:
        con.close()
    assert final == expected


@pytest.mark.integration
@pytest.mark.slow
@browser
def test_a_shop_origin_the_api_does_not_allow_sees_a_cors_error(stack: Stack, driver: Any) -> None:
    # Same API, same page, another port: another origin, not in FLYWHEEL_SERVER__CORS_ORIGINS.
    with serve_storefront(stack.api) as other_shop:
        assert other_shop != stack.shop
        open_shop_and_search(driver, other_shop, QUERY)
        error = wait(
            driver,
            lambda d: (
                d.find_element(*by_testid("error")).is_displayed()
                and d.find_element(*by_testid("error"))
            ),
            "the search error",
        )
        assert "Search failed" in error.text and other_shop in error.text
        assert driver.find_elements(*by_testid("result")) == []
        console = driver.get_log("browser")
    assert any("blocked by CORS policy" in e["message"] for e in console), console
