"""The listen page's mood reaches tempo and key (Debian's chromium, Playwright; every request
that does not go to the test server on 127.0.0.1 is aborted): with the tempo on auto, a move of
the pad from the happy-energetic corner to the sad-calm one brings a slower tempo at the next
section, chosen by the model within the style's range, with the status and the slider saying
so; and the large valence move turns the key to its parallel minor."""

from __future__ import annotations

import pytest

from browser_fixtures import listen_page, page_server, require_chromium, shipped_model
from browser_fixtures import state
from cadenza.codecs.music import parse_key
from test_listen_browser import wait_for

require_chromium()

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with page_server(shipped_model(), tmp_path_factory.mktemp("listen-mood")) as running:
        yield running


@pytest.fixture(scope="module")
def page(server):
    with listen_page(server["url"], "/listen?seed=3", wait_for) as pg:
        yield pg


def corner(page, right: bool, top: bool):
    box = page.locator("#pad").bounding_box()
    inset = 6
    page.mouse.click(box["x"] + (box["width"] - inset if right else inset),
                     box["y"] + (inset if top else box["height"] - inset))


def section_at(page, n: int, high: bool, what: str) -> tuple[dict, int]:
    """The first segment after the first ``n`` with valence and energy both high (>= 0.8) or
    both low (<= 0.2), waited for; and how many segments there are then."""
    cond = ("g.controls.valence >= 0.8 && g.controls.energy >= 0.8" if high else
            "g.controls.valence <= 0.2 && g.controls.energy <= 0.2")
    wait_for(page, f"window.cadenza.debug.state.segments.slice({n}).some(g => {cond})", 40, what)
    segs = state(page, "window.cadenza.debug.state.segments")
    hit = [g for g in segs[n:] if all((g["controls"][k] >= 0.8) if high else (g["controls"][k] <= 0.2)
                                      for k in ("valence", "energy"))]
    return hit[0], len(segs)


def test_the_pad_moves_the_tempo_and_the_mode(page):
    page.select_option("#style", "fiddle")
    assert page.locator("#tempo-auto").is_hidden(), "the tempo is on auto"
    page.click("#start")
    wait_for(page, "window.cadenza.debug.state.segments.length > 0", 30, "the first segment")
    n = len(state(page, "window.cadenza.debug.state.segments"))
    corner(page, right=True, top=True)              # happy, energetic
    happy, n = section_at(page, n, True, "a happy, energetic section")
    corner(page, right=False, top=False)            # sad, calm
    sad, _ = section_at(page, n, False, "a sad, calm section")
    for g in (happy, sad):
        assert g["chosen_by"]["tempo"] == "model" and g["chosen_by"]["energy"] == "listener"
    assert sad["controls"]["tempo"] < happy["controls"]["tempo"] / 1.15, (happy["controls"], sad["controls"])
    tonic, mode = parse_key(happy["controls"]["key"])
    assert mode == "major" and parse_key(sad["controls"]["key"]) == (tonic, "minor"), \
        (happy["controls"]["key"], sad["controls"]["key"])
    wait_for(page, f"window.cadenza.debug.state.currentSegment && window.cadenza.debug.state.currentSegment.beat >= {sad['beat']}",
             40, "the sad section under the playhead")
    t = round(sad["controls"]["tempo"])
    text = page.locator("#status").inner_text()
    assert f"{t} bpm (the model)" in text and f"{sad['controls']['key'][:-1]} minor (the model)" in text, text
    assert page.locator("#tempo").input_value() == str(t)
    page.click("#start")   # stop
