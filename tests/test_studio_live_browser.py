"""Play along in the /studio page, in a real browser (Debian's chromium, Playwright).

The real app with the shipped default model runs on a loopback port; Web MIDI is the fake of
test_studio_browser.py (an input the test fires from, an output that records what it is sent,
with time stamps). The page's own timers play a tune into the fake input at 100 bpm after a
two-beat count-in; the test counts the accompaniment events that arrive, checks that every
one arrived before its time and went to the MIDI output with that time stamp, that the roll
drew the take as it happened, then keeps the take and finds both parts and the credit in the
exported MIDI. No request or socket leaves the server's origin."""

from __future__ import annotations

import urllib.request

import pytest

from browser_fixtures import chromium_browser, open_page, page_server, require_chromium, shipped_model
from browser_fixtures import state
from browser_fixtures import sync_api
from conftest import require

symusic = require("symusic")
require_chromium()

from test_studio_browser import FAKE_MIDI  # noqa: E402

pytestmark = pytest.mark.timeout(180)
TUNE = [60, 64, 67, 65, 64, 62, 60, 62, 64, 65, 67, 72]


def wait_for(page, js, timeout_s=30.0, what=""):
    try:
        page.wait_for_function(js, timeout=timeout_s * 1000, polling=50)
    except sync_api.TimeoutError:
        live = state(page, "window.cadenza.debug.state.live")
        pytest.fail(f"timed out waiting for {what or js}; live: { {k: live.get(k) for k in ('on', 'status', 'origin')} }"
                    f", errors {state(page, 'window.cadenza.debug.state.errors')}, problems {page.problems}")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with page_server(shipped_model(), tmp_path_factory.mktemp("live")) as running:
        yield running


def test_play_along_keep_and_export(server):
    with chromium_browser() as chromium:
        context, page = open_page(chromium, server["url"], "/studio", viewport=(1280, 900), init_script=FAKE_MIDI,
                                  sockets=True)
        try:
            wait_for(page, "window.cadenza.debug.state.ready && window.cadenza.debug.state.busy === 0", 60, "the first session")
            wait_for(page, "window.cadenza.debug.state.midi.outputs.length === 1", 10, "the fake MIDI output")
            page.select_option("#live-role", "chords")
            page.select_option("#live-count-in", "2")
            page.click("#live")
            wait_for(page, "window.cadenza.debug.state.live.origin !== null", 30, "the count-in")
            page.evaluate("""(tune) => {
                const L = window.cadenza.debug.state.live, spb = 60000 / L.tempo;
                tune.forEach((p, k) => {
                    const on = L.origin + k * spb, off = on + 0.8 * spb;
                    setTimeout(() => window.__fakeMidi.fire([0x90, p, 90], on), Math.max(0, on - performance.now()));
                    setTimeout(() => window.__fakeMidi.fire([0x80, p, 0], off), Math.max(0, off - performance.now()));
                });
                window.__tuneEnd = L.origin + (tune.length + 1.5) * spb;
            }""", TUNE)
            wait_for(page, "window.cadenza.debug.state.rollStats.live > 4", 20, "the take in the roll")
            wait_for(page, "performance.now() > window.__tuneEnd", 30, "the end of the tune")
            live = state(page, "window.cadenza.debug.state.live")
            events = [e for e in live["events"] if e["role"] == "chords"]
            ons = [e for e in events if e["on"]]
            clicks = [e for e in live["events"] if e["role"] == "click" and e["on"]]
            assert len(clicks) == 2
            assert len(ons) >= 2 * (len(TUNE) - 2), f"only {len(ons)} accompaniment notes arrived"
            late = [(e["role"], e["on"], round(e["t"] - e["received"], 1), round(e["t"] - e["decided"], 1)) for e in live["events"] if e["received"] >= e["t"]]
            assert live["late"] == 0 and not late, f"events arrived late: {late}"
            sent = state(page, "window.__fakeMidi.sent")
            out = [m for m in sent if m["data"][0] == 0x91]             # note-ons on channel 2
            assert len(out) == len(ons)
            assert sorted(m["timestamp"] for m in out) == pytest.approx(sorted(e["t"] for e in ons), abs=1e-6)
            assert [p["pitch"] for p in live["person"]] == TUNE
            page.click("#keep")
            wait_for(page, "window.cadenza.debug.state.live.kept !== null && window.cadenza.debug.state.busy === 0", 30, "Keep")
            wait_for(page, "window.cadenza.debug.state.notes.some(n => n.by === 'model')", 10, "the kept notes")
            notes = state(page, "window.cadenza.debug.state.notes")
            assert [n["pitch"] for n in sorted(notes, key=lambda n: n["start"]) if n["by"] == "person"] == TUNE
            assert sum(n["by"] == "model" for n in notes) >= len(ons) - 3
            assert "you wrote" in page.locator("#credit").inner_text()
            sid = state(page, "window.cadenza.debug.state.session")
            with urllib.request.urlopen(f"{server['url']}/api/studio/sessions/{sid}/export?format=midi", timeout=30) as r:
                score = symusic.Score.from_midi(r.read())
            assert {t.name for t in score.tracks} == {"person", "Cadenza"}
            assert any("Cadenza" in m.text and "% of the notes by the person" in m.text for m in score.markers)
            assert page.foreign == [], f"requests that left the server: {page.foreign}"
            assert not [p for p in page.problems if "page error" in p], page.problems
        finally:
            context.close()
