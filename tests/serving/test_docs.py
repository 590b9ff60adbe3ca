"""The documentation pages work offline and show in the metrics like any route.

``/docs`` and ``/redoc`` reference only the app's own assets (no CDN), each of which the app
serves; a real headless Chromium that may not leave loopback renders Swagger UI's operations.
"""
from __future__ import annotations

from html.parser import HTMLParser
from typing import Iterator
from urllib.parse import urljoin, urlsplit

import pytest
import requests
from fastapi.testclient import TestClient

from serving.main import create_app
from tests.fixtures.api import api_settings, serve
from tests.fixtures.browser import chromium_missing

API_KEY = "docs-key"
PAGE_LOAD_TIMEOUT_SECONDS = 20.0


class _References(HTMLParser):
    """Every src and href of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]


def references(html: str) -> list[str]:
    parser = _References()
    parser.feed(html)
    return parser.urls


@pytest.fixture(scope="module")
def api_url(pg_cluster) -> Iterator[str]:
    with serve(create_app(api_settings(api_key=API_KEY), dsn=pg_cluster.new_database())) as url:
        yield url


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_documentation_pages_load_everything_from_the_app(api_url, page):
    html = requests.get(f"{api_url}{page}", timeout=10)
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    urls = references(html.text)
    assert any(url.endswith(".js") for url in urls), urls
    assert "http://" not in html.text and "https://" not in html.text, "the page names an outside host"
    for url in urls:
        absolute = urljoin(f"{api_url}{page}", url)
        assert urlsplit(absolute).netloc == urlsplit(api_url).netloc, url
        asset = requests.get(absolute, timeout=10)
        assert asset.status_code == 200 and len(asset.content) > 100, url
    schema = requests.get(f"{api_url}/openapi.json", timeout=10)
    assert schema.status_code == 200 and schema.json()["paths"]["/v1/bars"]


def test_pages_behind_a_proxy_prefix_point_under_it():
    # No lifespan (no `with`): the documentation routes never touch the database.
    behind_proxy = TestClient(create_app(api_settings()), root_path="/market")
    html = behind_proxy.get("/docs").text
    schema = behind_proxy.get("/openapi.json").json()
    assert {url for url in references(html)} == {"/market/docs/assets/swagger-ui.css",
                                                  "/market/docs/assets/favicon.png",
                                                  "/market/docs/assets/swagger-ui-bundle.js"}
    assert "url: '/market/openapi.json'" in html and schema["servers"] == [{"url": "/market"}]


def test_unknown_assets_are_404(api_url):
    assert requests.get(f"{api_url}/docs/assets/..%2F__init__.py", timeout=10).status_code == 404
    assert requests.get(f"{api_url}/docs/assets/core.py", timeout=10).status_code == 404


def test_documentation_routes_are_labelled_in_the_metrics(api_url):
    for path in ("/docs", "/openapi.json", "/docs/assets/swagger-ui.css"):
        requests.get(f"{api_url}{path}", timeout=10)
    text = requests.get(f"{api_url}/metrics", headers={"X-API-Key": API_KEY}, timeout=10).text
    for route in ("/docs", "/openapi.json", "/docs/assets/{name}"):
        assert f'alphastream_api_requests_total{{method="GET",route="{route}",status="200"}}' in text, route
    assert 'route="unmatched",status="200"' not in text


@pytest.mark.skipif(chromium_missing() is not None, reason=str(chromium_missing()))
def test_swagger_ui_renders_the_operations_without_internet(browser, api_url):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    # The app is served over plain http on loopback: refusing https refuses every CDN.
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["https://*"]})
    try:
        browser.get(f"{api_url}/docs")
        WebDriverWait(browser, PAGE_LOAD_TIMEOUT_SECONDS).until(
            lambda driver: driver.find_elements(By.CSS_SELECTOR, ".opblock-summary-path"))
        paths = {element.get_attribute("data-path") for element in
                 browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
    finally:
        browser.execute_cdp_cmd("Network.setBlockedURLs", {"urls": []})
    assert {"/v1/bars", "/v1/indicators", "/v1/stream/bars", "/metrics"} <= paths
