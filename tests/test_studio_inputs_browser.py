"""The /studio page's number boxes in a real browser (Debian's chromium, Playwright, every
request outside 127.0.0.1 aborted): each box takes its min and max from the server's request
schemas (GET /api/studio/bounds), takes a value at either bound, and refuses one past either
bound (or a fraction) with a visible sentence, sending nothing and leaving the box as typed,
never changing the number quietly. Infill on empty bars says first that it writes them from
nothing."""

from __future__ import annotations

import json
import urllib.request

import pytest

from browser_fixtures import page_server, require_chromium, shipped_model
from browser_fixtures import state
from test_studio_browser import drag_bars, settle, studio_page, wait_for

require_chromium()

pytestmark = pytest.mark.timeout(240)
ASKS = {"bars": "continue", "voices": "harmonize", "k": "infill"}   # the button each box goes with


def get(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with page_server(shipped_model(), tmp_path_factory.mktemp("studio-inputs")) as running:
        yield running


@pytest.fixture(scope="module")
def page(server):
    with studio_page(server["url"]) as pg:
        pg.suggests = []
        pg.on("request", lambda r: pg.suggests.append(json.loads(r.post_data)) if r.url.endswith("/suggest") else None)
        yield pg


def test_bounds_are_the_request_schemas(server):
    bounds = get(server["url"] + "/api/studio/bounds")
    schemas = get(server["url"] + "/openapi.json")["components"]["schemas"]
    where = {"tempo": "StudioOptions", "bars": "SuggestRequest", "voices": "SuggestRequest", "k": "SuggestRequest"}
    assert set(bounds) == set(where)
    for name, model in where.items():
        prop = schemas[model]["properties"][name]
        assert (bounds[name]["min"], bounds[name]["max"]) == (prop["minimum"], prop["maximum"]), name


def test_infill_on_empty_bars_says_it_writes_from_nothing(page):
    assert state(page, "window.cadenza.debug.state.notes") == []
    drag_bars(page, 0, 0)
    note = page.locator("#infill-note")
    assert note.is_visible() and "from nothing" in note.inner_text() and "bar 1" in note.inner_text()
    page.click("#infill")
    wait_for(page, "window.cadenza.debug.state.suggestion !== null", 60, "the infill suggestion")
    settle(page)
    assert "written from nothing" in page.locator("#suggestion-text").inner_text()
    assert "from nothing" in page.locator("#status").inner_text()
    page.click("#reject")
    settle(page)


def test_every_number_box_takes_its_bounds_and_refuses_past_them(page, server):
    bounds = get(server["url"] + "/api/studio/bounds")
    page.locator("body").focus()
    for letter in "asdfghjk":   # a piece to continue and harmonize: C D E F G A B C
        page.keyboard.press(letter)
        settle(page)
    drag_bars(page, 1, 1)       # infill's bar
    boxes = page.eval_on_selector_all("input[type=number]", "els => els.map(e => ({id: e.id, bound: e.dataset.bound, "
                                      "min: e.min, max: e.max}))")
    assert {b["id"] for b in boxes} == set(ASKS), "every number box is walked"
    tempo = page.locator("#tempo")
    assert (float(tempo.get_attribute("min")), float(tempo.get_attribute("max"))) == (
        bounds["tempo"]["min"], bounds["tempo"]["max"])
    error = page.locator("#error")
    for box in boxes:
        b = bounds[box["bound"]]
        assert (float(box["min"]), float(box["max"])) == (b["min"], b["max"]), box
        el, ask = page.locator("#" + box["id"]), "#" + ASKS[box["id"]]
        lo, hi = int(b["min"]), int(b["max"])
        for value in (lo, hi):                       # at the bounds: sent as typed
            el.fill(str(value))
            assert not error.is_visible() and el.get_attribute("aria-invalid") == "false"
            sent = len(page.suggests)
            page.click(ask)
            wait_for(page, "window.cadenza.debug.state.suggestion !== null", 90, f"{box['id']} = {value}")
            settle(page)
            assert page.suggests[sent][box["id"]] == value and len(page.suggests) == sent + 1
            assert not error.is_visible(), error.inner_text()
            page.click("#reject")
            settle(page)
        for typed in (str(lo - 1), str(hi + 1), f"{lo}.5"):   # past them (and a fraction): refused in words
            el.fill(typed)
            assert error.is_visible() and f"from {lo} to {hi}" in error.inner_text(), (box["id"], typed)
            assert el.get_attribute("aria-invalid") == "true"
            sent = len(page.suggests)
            page.click(ask)
            page.wait_for_timeout(300)
            settle(page)
            assert len(page.suggests) == sent, f"{box['id']} = {typed} was sent"
            assert el.input_value() == typed, "the box keeps what was typed"
            assert error.is_visible() and f"{typed} is not" in error.inner_text()
        el.fill(str(lo))                             # a good value again: the message goes
        assert not error.is_visible()
