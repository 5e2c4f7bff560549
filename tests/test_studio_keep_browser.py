"""The studio keeps the person's music, in a real browser (Debian's chromium, Playwright, every
request outside 127.0.0.1 aborted; the shipped model): the infill's Keep control is "my notes"
by default and the person's notes survive an accepted infill; Harmonize without a selection
covers the model's bars too; after Harmonize the lit keys stay where the melody is; the Key
selector changes the key the model is given on a piece that has notes."""

from __future__ import annotations

import json

import pytest

from browser_fixtures import page_server, require_chromium, shipped_model
from browser_fixtures import state
from test_studio_browser import drag_bars, lit_keys, settle, studio_page, wait_for

require_chromium()

pytestmark = pytest.mark.timeout(240)
TUNE = "asdfgfdsadgkjgda"      # C D E F G F E D C E G C5 B G E C on the computer keyboard (4 bars)
PITCH = {"a": 60, "s": 62, "d": 64, "f": 65, "g": 67, "h": 69, "j": 71, "k": 72}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with page_server(shipped_model(), tmp_path_factory.mktemp("studio-keep")) as running:
        yield running


@pytest.fixture(scope="module")
def page(server):
    with studio_page(server["url"]) as pg:
        pg.requests_sent = []
        pg.on("request", lambda r: pg.requests_sent.append((r.method, r.url, r.post_data)))
        yield pg
        assert not [p for p in pg.problems if "page error" in p], pg.problems


def new_piece(page, letters: str):
    page.click("#new-piece")
    settle(page)
    page.locator("body").focus()
    for letter in letters:
        page.keyboard.press(letter)
        settle(page)


def person(page):
    return [n for n in state(page, "window.cadenza.debug.state.notes") if n["by"] == "person"]


def ask(page, kind):
    page.click(f"#{kind}")
    wait_for(page, f"window.cadenza.debug.state.suggestion && window.cadenza.debug.state.suggestion.kind === '{kind}'", 90, kind)
    settle(page)
    return state(page, "window.cadenza.debug.state.suggestion")


def accept(page):
    page.click("#accept")
    settle(page)


def test_infill_keeps_my_notes_by_default(page):
    new_piece(page, "asdf" + "g" + "d" + "a" + "g")     # bar 2: G, E, C, G (the person's)
    assert page.locator("#infill-keep").input_value() == "person"
    mine = person(page)
    drag_bars(page, 1, 1)
    assert "keeps your 4 notes in bar 2" in page.locator("#infill-note").inner_text()
    page.locator("#k").fill("4")
    g = ask(page, "infill")
    assert g["request"]["keep"] == "person" and g["replaces"] == [] and g["info"]["kept"] == 4
    assert "keeping your 4 notes there" in page.locator("#suggestion-text").inner_text()
    accept(page)
    assert person(page) == mine, "every note of the person's is still there after Accept"
    page.locator("#infill-keep").select_option("none")
    assert "would replace the 4 notes there (4 of them yours)" in page.locator("#infill-note").inner_text()
    page.locator("#infill-keep").select_option("person")


def test_harmonize_covers_the_whole_piece(page):
    new_piece(page, "asdfgfds")                             # bars 1-2 the person's
    page.locator("#bars").fill("2")
    accept_continue = ask(page, "continue")
    assert any(n["start"] >= 8 for n in accept_continue["notes"])
    accept(page)
    page.dblclick("#roll")                                  # no selection: the whole piece
    assert state(page, "window.cadenza.debug.state.selection") is None
    g = ask(page, "harmonize")
    assert g["request"]["from_bar"] is None
    bars = {int(n["start"] // 4) for n in g["notes"]}
    assert {0, 1} <= bars and bars & {2, 3}, f"voices under the model's bars 3-4 too: {sorted(bars)}"
    assert "over the whole piece" in page.locator("#suggestion-text").inner_text()
    page.click("#reject")
    settle(page)
    drag_bars(page, 2, 3)
    g = ask(page, "harmonize")
    assert (g["request"]["from_bar"], g["request"]["to_bar"]) == (2, 4)
    assert g["notes"] and all(8 <= n["start"] < 16 for n in g["notes"])
    page.click("#reject")
    settle(page)
    page.dblclick("#roll")


def test_lit_keys_stay_with_the_melody_after_harmonize(page):
    new_piece(page, TUNE)
    before = sorted(k["pitch"] for k in lit_keys(page))
    page.locator("#voices").fill("3")
    g = ask(page, "harmonize")
    assert min(n["pitch"] for n in g["notes"]) < 55, "voices well under the melody"
    accept(page)
    after = sorted(k["pitch"] for k in lit_keys(page))
    assert after == before, (before, after)
    assert min(after) >= min(PITCH[c] for c in TUNE) - 5, f"lit keys where a melody player's fingers are: {after}"


def test_the_key_selector_changes_the_key_of_a_piece_with_notes(page, server):
    new_piece(page, "a")                                    # one C4: C major and A-flat major both hold it
    sent = len(page.requests_sent)
    page.locator("#key").select_option("Ab")
    wait_for(page, "window.cadenza.debug.state.busy === 0 && "
                   "/Key: Ab major/.test(document.getElementById('status').textContent)", 30, "the key change")
    patches = [r for r in page.requests_sent[sent:] if r[0] == "PATCH"]
    assert len(patches) == 1 and json.loads(patches[0][2]) == {"key": "Ab"}
    assert len(person(page)) == 1, "the notes stay"
    ab = {8, 10, 0, 1, 3, 5, 7}
    lit = [k["pitch"] for k in lit_keys(page)]
    assert sum(p % 12 in ab for p in lit) >= 4, f"the lit keys follow A-flat major: {lit}"
