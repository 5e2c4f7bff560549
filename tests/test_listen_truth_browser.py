"""The /listen page tells the truth (Debian's chromium, Playwright; every request that does
not go to the test server on 127.0.0.1 is aborted and fails the test):

- the pad is the stream's grid of valence and energy levels, its cells named with the
  words the status uses (tense, happy, calm, sad, energetic), and the ring under the music
  sits on the cell the status names;
- bars count from 1; the status says who chose each control (you, your likes, the model);
- the tempo slider's handle shows the tempo that plays, set or on auto;
- a like of fiddle at 108 bpm, then style and tempo left free: the next section the likes
  choose is fiddle at 108 bpm, and the status and the preferences line say the same.
"""

from __future__ import annotations

import math
import re

import pytest

from browser_fixtures import listen_page, page_server, require_chromium, shipped_model
from browser_fixtures import state
from test_listen_browser import wait_for

require_chromium()

pytestmark = pytest.mark.timeout(180)
MOODS = {"tense", "happy", "calm", "sad", "energetic"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with page_server(shipped_model(), tmp_path_factory.mktemp("listen-truth")) as running:
        yield running


@pytest.fixture(scope="module")
def page(server):
    with listen_page(server["url"], "/listen?seed=7", wait_for) as pg:
        yield pg


def pad_mood(pad, valence, energy):
    n = pad["levels"]
    lv = lambda x: min(n - 1, max(0, math.floor(x * n)))   # noqa: E731
    return pad["grid"][lv(valence)][lv(energy)]


def status(page):
    return page.locator("#status").inner_text()


def test_the_pad_carries_the_status_words(page):
    ready = state(page, "window.cadenza.debug.state.ready")
    pad = ready["pad"]
    labels = state(page, "window.cadenza.debug.state.padLabels")
    assert {lab["name"] for lab in labels} == MOODS == set(ready["moods"])
    for lab in labels:    # each word sits on a cell the status would name with that word
        assert pad_mood(pad, lab["valence"], lab["energy"]) == lab["name"]
    assert {m for row in pad["grid"] for m in row} == MOODS
    tempo = page.locator("#tempo")
    t = ready["bounds"]["tempo"]
    assert (float(tempo.get_attribute("min")), float(tempo.get_attribute("max"))) == (t["min"], t["max"])


def test_status_counts_bars_from_1_and_says_who_chose(page):
    page.select_option("#style", "fiddle")
    page.locator("#tempo").fill("108")
    assert page.locator("#tempo-value").inner_text() == "108 bpm" and page.locator("#tempo-auto").is_visible()
    page.click("#start")
    wait_for(page, "document.getElementById('status').textContent.startsWith('bar 1 ·')", 30, "the status at bar 1")
    wait_for(page, "window.cadenza.debug.state.currentSegment !== null", 10, "the first segment under the playhead")
    seg = state(page, "window.cadenza.debug.state.currentSegment")
    c, by = seg["controls"], seg["chosen_by"]
    assert c["style"] == "fiddle" and c["tempo"] == pytest.approx(108) and by["style"] == by["tempo"] == "listener"
    text = status(page)
    assert re.match(r"^bar [1-9]\d* · ", text), text
    assert "fiddle (you)" in text and "108 bpm (you)" in text, text
    assert f"{c['mood']} (the model)" in text, text        # the pad was never touched
    assert "(the model)" in text.split("bpm")[-1], text    # the key
    # the ring (where the music is) sits on the cell the status names; no dot before a touch
    assert pad_mood(state(page, "window.cadenza.debug.state.ready.pad"), c["valence"], c["energy"]) == c["mood"]
    assert not state(page, "window.cadenza.debug.state.pad")["touched"]
    assert page.locator("#tempo").input_value() == "108"


def test_a_like_steers_the_next_section_and_the_words_agree(page):
    page.click("#like")
    wait_for(page, "window.cadenza.debug.state.acks.some(a => a.type === 'liked' && a.saved)", 10, "the like, saved")
    wait_for(page, "document.getElementById('prefs').textContent.includes('1 like')", 10, "the preferences line")
    prefs = page.locator("#prefs").inner_text()
    assert "fiddle" in prefs and "90-110 bpm" in prefs, prefs
    assert "Your likes choose the style, mood and tempo you leave free." in prefs, prefs
    n = len(state(page, "window.cadenza.debug.state.segments"))
    page.select_option("#style", "")     # "any": the style is free again
    page.click("#tempo-auto")            # and the tempo
    assert page.locator("#tempo-auto").is_hidden()
    wait_for(page, f"""window.cadenza.debug.state.segments.slice({n}).some(g =>
                 g.chosen_by.style === 'preferences' && g.chosen_by.tempo === 'preferences')""",
             30, "a section whose style and tempo the likes chose")
    seg = next(g for g in state(page, "window.cadenza.debug.state.segments")[n:]
               if g["chosen_by"]["style"] == g["chosen_by"]["tempo"] == "preferences")
    assert seg["controls"]["style"] == "fiddle"
    assert seg["controls"]["tempo"] == pytest.approx(108, abs=2)
    wait_for(page, f"window.cadenza.debug.state.currentSegment && window.cadenza.debug.state.currentSegment.beat >= {seg['beat']}",
             30, "that section under the playhead")
    text, who = status(page), state(page, "window.cadenza.debug.state.statusChoosers")
    assert "fiddle (your likes)" in text and f"{round(seg['controls']['tempo'])} bpm (your likes)" in text, text
    credited = {k for k, v in who.items() if v == "your likes"}
    assert {"style", "tempo"} <= credited and credited <= {"style", "mood", "tempo"}, who
    assert "Your likes choose the style, mood and tempo" in page.locator("#prefs").inner_text()
    # on auto, the slider's handle and its words follow the tempo that plays
    assert page.locator("#tempo").input_value() == str(round(seg["controls"]["tempo"]))
    assert page.locator("#tempo-value").inner_text() == f"auto · {round(seg['controls']['tempo'])} bpm"
    page.click("#start")   # stop
