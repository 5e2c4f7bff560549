"""The home page, /docs and /redoc in a real browser (Debian's chromium, Playwright), with the
network blocked: every request that does not go to the test server on 127.0.0.1 is aborted
and listed, and the test fails if there is any. FastAPI's own /docs and /redoc load Swagger
UI, ReDoc, a favicon and Google Fonts from the internet; ours load the vendored builds."""

from __future__ import annotations

import json
import urllib.request

import pytest

from browser_fixtures import chromium_browser, open_page, page_server, require_chromium, shipped_model

require_chromium()

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with page_server(shipped_model(), tmp_path_factory.mktemp("pages")) as running:
        yield running


@pytest.fixture(scope="module")
def chromium():
    with chromium_browser() as browser:
        yield browser


def operations(url: str) -> set[str]:
    with urllib.request.urlopen(url + "/openapi.json") as r:
        spec = json.load(r)
    return {f"{m.upper()} {p}" for p, ops in spec["paths"].items() for m in ops}


def visit(chromium, server, path):
    context, page = open_page(chromium, server["url"], path)
    page.requests = []
    page.on("request", lambda r: page.requests.append(r.url))
    return context, page


def test_docs_lists_every_operation_offline(chromium, server):
    want = operations(server["url"])
    context, page = visit(chromium, server, "/docs")
    try:
        page.wait_for_selector(".opblock", timeout=30_000)
        shown = set(page.eval_on_selector_all(
            ".opblock", "els => els.map(e => e.querySelector('.opblock-summary-method').textContent.trim() + ' ' +"
                        " e.querySelector('.opblock-summary-path').getAttribute('data-path'))"))
        assert shown == want
        assert page.title() == "Cadenza · API"
        assert page.eval_on_selector("link[rel*=icon]", "e => e.getAttribute('href')") == "/static/favicon.svg"
        assert page.foreign == [], f"requests that left 127.0.0.1: {page.foreign}"
        assert page.problems == []
    finally:
        context.close()


def test_redoc_renders_offline(chromium, server):
    want = operations(server["url"])
    context, page = visit(chromium, server, "/redoc")
    try:
        page.wait_for_selector("[data-section-id^='operation/']", state="attached", timeout=30_000)
        n = page.eval_on_selector_all("[data-section-id^='operation/']", "els => els.length")
        assert n == len(want)
        assert page.foreign == [], f"requests that left 127.0.0.1: {page.foreign}"
        assert page.problems == []
    finally:
        context.close()


def test_home_page_names_the_model_and_links_the_pages(chromium, server):
    context, page = visit(chromium, server, "/")
    try:
        page.wait_for_function("document.getElementById('model-name')", timeout=20_000)
        from cadenza.music.registry import default_model_dir

        assert page.text_content("#model-name") == default_model_dir().name
        assert "parameters" in page.text_content("#model") and "strided attention" in page.text_content("#model")
        hrefs = page.eval_on_selector_all("a", "els => els.map(a => a.getAttribute('href'))")
        assert {"/listen", "/studio", "/docs", "/redoc"} <= set(hrefs)
        assert page.eval_on_selector("body", "b => getComputedStyle(b).backgroundColor") == "rgb(246, 245, 241)"
        assert "Sparse Transformer for music" in page.text_content("header")
        assert page.foreign == [] and page.problems == []
    finally:
        context.close()
