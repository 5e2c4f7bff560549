"""The /studio page in a real browser: Debian's chromium driven by Playwright (sync API).

The real app (``create_app`` with the shipped default model, one torch thread, a preferences
database in a temporary folder) runs under uvicorn in a background thread on a free loopback
port, as in test_listen_browser.py. Web MIDI is replaced before the page loads
(``page.add_init_script``) by a fake ``navigator.requestMIDIAccess`` with one input the test
fires note-on/note-off messages from and one output that records what it is sent (no sysex
is ever asked for or sent). One page is opened for the module and the tests write one piece
in order: clicked and typed notes with the predicted keys lit, a recorded MIDI phrase on the
16th grid, a MIDI note appended, Continue as a preview then Accept, Undo and Redo, an infilled
bar (nothing outside it changes), MIDI out, the MIDI and WAV downloads. Every request the page
makes must go to the server's own origin.

``CADENZA_SCREENSHOTS=1`` rewrites docs/studio.png and docs/studio-infill.png; otherwise the
screenshots go to a temporary folder, so a normal run leaves the tree clean.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import urllib.request

import pytest

from browser_fixtures import ROOT, chromium_browser, page_server, require_chromium, serving, shipped_model
from browser_fixtures import open_page as _open_page
from browser_fixtures import state
from browser_fixtures import sync_api
from conftest import require

symusic = require("symusic")
SHOTS = {"main": ROOT / "docs" / "studio.png", "infill": ROOT / "docs" / "studio-infill.png"}
require_chromium()

pytestmark = pytest.mark.timeout(120)

FAKE_MIDI = """
(() => {
  const input = { id: "fake-in", name: "Fake keyboard", type: "input", state: "connected",
                  connection: "open", onmidimessage: null };
  const sent = [];
  const output = { id: "fake-out", name: "Fake synth", type: "output", state: "connected", connection: "open",
                   send(data, timestamp) { sent.push({ data: Array.from(data), timestamp: timestamp ?? null }); } };
  const fake = { sent, asked: [],
    fire(data, timeStamp) {
      const ev = { data: new Uint8Array(data), timeStamp: timeStamp ?? performance.now() };
      if (input.onmidimessage) input.onmidimessage(ev);
    } };
  window.__fakeMidi = fake;
  Object.defineProperty(Navigator.prototype, "requestMIDIAccess", { configurable: true, value(opts) {
    fake.asked.push(opts || null);
    if (opts && opts.sysex) return Promise.reject(new DOMException("no sysex here", "SecurityError"));
    return Promise.resolve({ inputs: new Map([[input.id, input]]), outputs: new Map([[output.id, output]]),
                             sysexEnabled: false, onstatechange: null });
  } });
})();
"""


def wait_for(page, js: str, timeout_s: float = 20.0, what: str = ""):
    try:
        page.wait_for_function(js, timeout=timeout_s * 1000, polling=50)
    except sync_api.TimeoutError:
        s = state(page)
        brief = {k: s.get(k) for k in ("session", "busy", "requests", "synth", "recording", "selection", "errors")}
        brief["notes"] = len(s.get("notes") or [])
        pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what or js}; page state: {brief}; "
                    f"page problems: {getattr(page, 'problems', None)}")


def settle(page, what="the page's requests"):
    wait_for(page, "window.cadenza.debug.state.ready && window.cadenza.debug.state.busy === 0", 30, what)


@pytest.fixture(scope="module")
def model():
    return shipped_model()


@pytest.fixture(scope="module")
def server(model, tmp_path_factory):
    with page_server(model, tmp_path_factory.mktemp("studio")) as running:
        yield running


@pytest.fixture(scope="module")
def chromium():
    with chromium_browser() as browser:
        yield browser


def open_page(chromium, origin, path="/studio"):
    return _open_page(chromium, origin, path, viewport=(1280, 900), init_script=FAKE_MIDI)   # the studio opens no socket


@contextlib.contextmanager
def studio_page(origin: str):
    """The studio in a fresh chromium, once its first session is up; on the way out, checks
    that no request left 127.0.0.1."""
    with chromium_browser() as chromium:
        context, pg = open_page(chromium, origin)
        settle(pg, "the first session")
        yield pg
        assert pg.foreign == [], f"requests that left 127.0.0.1: {pg.foreign}"
        context.close()


@pytest.fixture(scope="module")
def page(server, chromium):
    context, pg = open_page(chromium, server["url"])
    settle(pg, "the first session")
    pg.played = []   # what the test played: (pitch, start, duration), the person's notes
    yield pg
    context.close()


def api(server, page, rest="", method="GET"):
    sid = state(page, "window.cadenza.debug.state.session")
    req = urllib.request.Request(f"{server['url']}/api/studio/sessions/{sid}{rest}", method=method)
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def notes_of(s, by=None):
    return [(n["pitch"], n["start"], n["duration"]) for n in s["notes"] if by is None or n["by"] == by]


def key(page, pitch):
    return page.locator(f'#piano .key[data-pitch="{pitch}"]')


def lit_keys(page):
    return page.evaluate("""() => [...document.querySelectorAll('#piano .key.predicted')].map(k => ({
        pitch: Number(k.dataset.pitch), label: k.querySelector('.prob').textContent,
        p: Number(k.style.getPropertyValue('--p'))}))""")


def color_pixels(page, rgb, tol=40) -> int:
    """Pixels of the roll within ``tol`` of the colour ``rgb``."""
    return page.evaluate("""([r, g, b, tol]) => {
        const c = document.getElementById('roll'), d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < d.length; i += 4)
            if (Math.abs(d[i] - r) + Math.abs(d[i + 1] - g) + Math.abs(d[i + 2] - b) < tol) n++;
        return n;
    }""", [*rgb, tol])


PERSON_RGB, MODEL_RGB, PREVIEW_RGB = (0x7f, 0xb2, 0xff), (0xff, 0xb3, 0x5c), (0x8e, 0xe0, 0x8a)


def test_page_loads_with_a_session_a_piano_and_midi(page):
    s = state(page)
    assert s["session"] and s["notes"] == [] and s["barBeats"] == 4
    assert page.locator("#piano .key").count() == 61 and page.locator("#piano .key.white").count() == 36
    # the keyboard letters are printed on the keys: a = C4, w = C#4, ; = E5
    assert key(page, 60).locator(".kb").inner_text().lower() == "a"
    assert key(page, 61).locator(".kb").inner_text().lower() == "w"
    assert key(page, 76).locator(".kb").inner_text() == ";"
    assert key(page, 60).locator(".name").inner_text() == "C4"
    page.keyboard.press("x")   # an octave up: a = C5
    assert key(page, 72).locator(".kb").inner_text().lower() == "a" and key(page, 60).locator(".kb").inner_text() == ""
    page.keyboard.press("z")
    assert key(page, 60).locator(".kb").inner_text().lower() == "a"
    # two requests so far: the number boxes' bounds and the session
    assert state(page, "window.cadenza.debug.state.notes") == [] and state(page, "window.cadenza.debug.state.requests") == 2
    # the fake Web MIDI was asked for without sysex, and its ports are listed
    assert page.evaluate("window.__fakeMidi.asked") == [{"sysex": False}]
    assert s["midi"]["available"] and s["midi"]["inputs"] == ["Fake keyboard"] and s["midi"]["outputs"] == ["Fake synth"]
    assert page.locator("#midi-out").input_value() == "fake-out"
    assert page.locator("#continue").is_disabled() and page.locator("#infill").is_disabled()


def test_click_and_type_notes_light_the_predicted_keys(page, server):
    for i, p in enumerate([60, 62, 64, 65]):          # clicks: C D E F
        key(page, p).click()
        settle(page)
        page.played.append((p, float(i), 1.0))
    page.locator("body").focus()
    for i, (letter, p) in enumerate([("g", 67), ("h", 69), ("g", 67), ("d", 64)]):   # typed: G A G E
        page.keyboard.press(letter)
        settle(page)
        page.played.append((p, 4.0 + i, 1.0))
    s = api(server, page)
    assert notes_of(s, "person") == page.played and notes_of(s) == page.played
    assert page.locator("#status").inner_text().startswith("E4 at beat 8, 1 beat · predictions in ")
    got = state(page)
    assert notes_of(got) == page.played
    # the lit keys are the five likeliest next notes, as GET .../predictions says
    preds = api(server, page, "/predictions")
    assert len(preds) == 5
    lit = lit_keys(page)
    assert sorted(k["pitch"] for k in lit) == sorted(p["pitch"] for p in preds)
    assert [p["pitch"] for p in got["predictions"]] == [p["pitch"] for p in preds]
    by_pitch = {k["pitch"]: k for k in lit}
    for p in preds:
        assert by_pitch[p["pitch"]]["label"] == f"{round(p['probability'] * 100)}%"
    # brightness follows probability: the likeliest is the brightest
    best = max(preds, key=lambda p: p["probability"])["pitch"]
    assert by_pitch[best]["p"] == pytest.approx(1.0) and all(k["p"] <= 1.0 for k in lit)
    assert "Next, the model thinks" in page.locator("#predictions-text").inner_text()
    # the roll draws the person's notes in the person's colour
    assert state(page, "window.cadenza.debug.state.rollStats")["person"] == 8
    assert color_pixels(page, PERSON_RGB) > 100
    assert page.locator("#credit").inner_text() == "you wrote 100% of the notes (8 of 8)"


def test_recording_a_midi_phrase_quantizes_to_16ths(page, server):
    """Record with the metronome on; the fake MIDI input fires note-on/off at known times after
    recording started (its events' time stamps), which land on the 16th grid from bar 3."""
    page.locator("#metronome").check()
    page.click("#record")
    wait_for(page, "window.cadenza.debug.state.recording", 5, "recording")
    s = state(page)
    assert s["recordOrigin"] == 8.0, "recording starts at the bar line after the piece"
    t0, ms = s["recordStart"], 60000 / s["tempo"]   # 100 bpm: 600 ms a beat
    assert s["tempo"] == 100
    # (pitch, on, off) in beats after the start, a little off the grid as a person plays
    phrase = [(71, 0.02, 0.97), (72, 1.07, 1.55), (74, 1.55, 1.98), (76, 2.53, 4.49)]
    for p, on, off in phrase:
        page.evaluate(f"window.__fakeMidi.fire([0x90, {p}, 100], {t0 + on * ms})")
        page.evaluate(f"window.__fakeMidi.fire([0x80, {p}, 0], {t0 + off * ms})")
    settle(page)
    wait_for(page, "window.cadenza.debug.state.metronomeClicks >= 2", 10, "the metronome's clicks")
    page.click("#record")
    wait_for(page, "!window.cadenza.debug.state.recording", 5, "recording to stop")
    want = [(71, 8.0, 1.0), (72, 9.0, 0.5), (74, 9.5, 0.5), (76, 10.5, 2.0)]
    page.played.extend(want)
    assert notes_of(api(server, page), "person") == page.played
    assert state(page, "window.cadenza.debug.state.midi.received") == 4
    page.locator("#metronome").uncheck()


def test_midi_note_on_appends_a_played_note(page, server):
    """Not recording: a note-on from the MIDI input goes after the piece's last note, one beat."""
    page.evaluate("window.__fakeMidi.fire([0x90, 69, 90])")
    settle(page)
    page.evaluate("window.__fakeMidi.fire([0x80, 69, 0])")
    page.played.append((69, 12.5, 1.0))
    s = api(server, page)
    assert notes_of(s, "person") == page.played
    assert sorted(k["pitch"] for k in lit_keys(page)) == sorted(p["pitch"] for p in api(server, page, "/predictions"))


def test_continue_preview_accept_undo_redo(page, server):
    before = api(server, page)
    page.locator("#bars").fill("2")
    page.click("#continue")
    wait_for(page, "window.cadenza.debug.state.suggestion !== null", 30, "the continue suggestion")
    settle(page)
    g = state(page, "window.cadenza.debug.state.suggestion")
    assert g["kind"] == "continue" and g["notes"] and g["replaces"] == []
    assert page.locator("#suggestion").is_visible() and "continue" in page.locator("#suggestion-text").inner_text()
    # a preview: dashed green in the roll, nothing in the piece yet
    wait_for(page, f"window.cadenza.debug.state.rollStats.preview === {len(g['notes'])}", 5, "the preview drawn")
    assert color_pixels(page, PREVIEW_RGB) > 50
    assert color_pixels(page, MODEL_RGB) == 0
    assert api(server, page)["notes"] == before["notes"]
    page.click("#accept")
    settle(page)
    wait_for(page, "window.cadenza.debug.state.suggestion === null", 5, "the suggestion to close")
    after = api(server, page)
    assert sorted(notes_of(after, "model")) == sorted((n["pitch"], n["start"], n["duration"]) for n in g["notes"])
    assert notes_of(after, "person") == page.played
    assert state(page, "window.cadenza.debug.state.rollStats")["model"] == len(g["notes"])
    assert color_pixels(page, MODEL_RGB) > 50 and color_pixels(page, PREVIEW_RGB) == 0
    assert not page.locator("#suggestion").is_visible()
    # the lit keys follow the piece after accept too
    assert sorted(k["pitch"] for k in lit_keys(page)) == sorted(p["pitch"] for p in api(server, page, "/predictions"))
    # Undo (the button) removes the model's notes; Ctrl+Shift+Z brings them back
    page.click("#undo")
    settle(page)
    assert api(server, page)["notes"] == before["notes"]
    assert state(page, "window.cadenza.debug.state.rollStats")["model"] == 0
    page.keyboard.press("Control+Shift+Z")
    settle(page)
    assert api(server, page)["notes"] == after["notes"]
    page.keyboard.press("Control+Z")
    settle(page)
    assert api(server, page)["notes"] == before["notes"]
    page.keyboard.press("Control+Shift+Z")
    settle(page)
    assert api(server, page)["notes"] == after["notes"]
    assert state(page, "window.cadenza.debug.state.notes") == after["notes"]


def drag_bars(page, first: int, last: int):
    """Drag in the roll from the middle of bar ``first`` to the middle of bar ``last`` (from 0)."""
    L = state(page, "window.cadenza.debug.state.rollLayout")
    box = page.locator("#roll").bounding_box()
    x = lambda bar: box["x"] + L["left"] + (bar + 0.5) * L["barBeats"] * L["beatWidth"]
    y = box["y"] + box["height"] / 2
    page.mouse.move(x(first), y)
    page.mouse.down()
    page.mouse.move((x(first) + x(last)) / 2, y, steps=3)
    page.mouse.move(x(last), y, steps=3)
    page.mouse.up()


def test_infill_a_selected_bar_changes_only_that_bar(page, server, tmp_path):
    drag_bars(page, 2, 0)   # a drag selects bars 1-3 ...
    assert state(page, "window.cadenza.debug.state.selection") == {"from_bar": 0, "to_bar": 3}
    drag_bars(page, 1, 1)   # ... and bar 2 (from 0: bar 1) alone
    assert state(page, "window.cadenza.debug.state.selection") == {"from_bar": 1, "to_bar": 2}
    assert page.locator("#infill").inner_text() == "Infill bar 2"
    before = api(server, page)
    a, b = 4.0, 8.0
    inside = [n for n in before["notes"] if a <= n["start"] < b]
    outside = [n for n in before["notes"] if not a <= n["start"] < b]
    assert inside and outside
    page.locator("#k").fill("4")
    page.locator("#scale").select_option("C")
    page.locator("#infill-keep").select_option("none")     # rewrite the bar (the default keeps the person's notes)
    page.click("#infill")
    wait_for(page, "window.cadenza.debug.state.suggestion !== null", 30, "the infill suggestion")
    settle(page)
    g = state(page, "window.cadenza.debug.state.suggestion")
    assert g["kind"] == "infill" and g["request"]["from_bar"] == 1 and g["request"]["to_bar"] == 2
    assert "infill in bar 2" in page.locator("#suggestion-text").inner_text()
    assert g["request"]["constraints"]["scale"] == "C" and g["request"]["k"] == 4
    assert sorted(g["replaces"]) == sorted(n["id"] for n in inside)
    assert all(a <= n["start"] < b for n in g["notes"])
    assert all(n["pitch"] % 12 in (0, 2, 4, 5, 7, 9, 11) for n in g["notes"]), "the scale lock"
    wait_for(page, f"window.cadenza.debug.state.rollStats.replaced === {len(inside)}", 5, "the replaced notes dimmed")
    target = SHOTS["infill"] if os.environ.get("CADENZA_SCREENSHOTS") == "1" else tmp_path / "studio-infill.png"
    page.wait_for_timeout(100)
    page.screenshot(path=str(target), full_page=True)
    page.click("#accept")
    settle(page)
    after = api(server, page)
    # outside the selected bar: the very same notes (ids, authors, everything)
    assert [n for n in after["notes"] if not a <= n["start"] < b] == outside
    now_inside = [n for n in after["notes"] if a <= n["start"] < b]
    assert not {n["id"] for n in inside} & {n["id"] for n in after["notes"]}, "the old bar's notes are gone"
    assert all(n["by"] == "model" for n in now_inside)
    key3 = lambda n: (n["pitch"], n["start"], n["duration"])
    assert sorted(map(key3, now_inside)) == sorted(map(key3, g["notes"]))
    page.played[:] = [p for p in page.played if not a <= p[1] < b]
    page.locator("#infill-keep").select_option("person")


def test_answer_harmonize_regenerate_reject(page, server):
    before = api(server, page)["notes"]
    page.locator("#scale").select_option("")
    for kind in ("answer", "harmonize"):
        page.click(f"#{kind}")
        wait_for(page, f"window.cadenza.debug.state.suggestion && window.cadenza.debug.state.suggestion.kind === '{kind}'", 30,
                 f"the {kind} suggestion")
        settle(page)
        g = state(page, "window.cadenza.debug.state.suggestion")
        by = {n["id"]: n["by"] for n in before}
        assert g["notes"] and all(by[i] == "model" for i in g["replaces"]) and g["request"]["constraints"] == {
            "scale": None, "role": None, "density": None}
        assert kind == "harmonize" or g["replaces"] == []
        wait_for(page, f"window.cadenza.debug.state.rollStats.preview === {len(g['notes'])}", 5, "the preview drawn")
    last_onset = max(n["start"] for n in before)
    next_bar = (last_onset // 4 + 1) * 4   # the bar line after the last onset (a held note may cross it)
    page.locator("#role").select_option("bass")
    page.click("#answer")
    wait_for(page, "window.cadenza.debug.state.suggestion && window.cadenza.debug.state.suggestion.kind === 'answer'", 30, "answer")
    settle(page)
    g = state(page, "window.cadenza.debug.state.suggestion")
    assert g["request"]["constraints"]["role"] == "bass"
    assert all(n["start"] >= next_bar - 1e-9 for n in g["notes"]), \
        ("an answer starts at the next bar line", next_bar, sorted(n["start"] for n in g["notes"]), g["region"])
    page.click("#regenerate")
    wait_for(page, f"window.cadenza.debug.state.suggestion && window.cadenza.debug.state.suggestion.id !== {g['id']}", 30, "regenerate")
    settle(page)
    g2 = state(page, "window.cadenza.debug.state.suggestion")
    assert g2["kind"] == "answer" and g2["request"]["seed"] != g["request"]["seed"]
    page.click("#reject")
    settle(page)
    assert state(page, "window.cadenza.debug.state.suggestion") is None and not page.locator("#suggestion").is_visible()
    page.locator("#role").select_option("")
    assert api(server, page)["notes"] == before, "asking changes nothing until a suggestion is accepted"


def test_midi_out_receives_the_piece(page, server):
    page.evaluate("window.__fakeMidi.sent.length = 0")
    page.click("#send-midi")
    sent = page.evaluate("window.__fakeMidi.sent")
    notes = api(server, page)["notes"]
    ons = [m for m in sent if m["data"][0] & 0xF0 == 0x90 and m["data"][2] > 0]
    offs = [m for m in sent if m["data"][0] & 0xF0 == 0x80]
    assert collections.Counter(m["data"][1] for m in ons) == collections.Counter(n["pitch"] for n in notes)
    assert len(offs) == len(ons)
    assert all(len(m["data"]) == 3 and 0xF0 not in m["data"] for m in sent), "note messages only, no sysex"
    # timed by the beats: the first note first, each note-off after its note-on
    first_on = min(ons, key=lambda m: m["timestamp"])
    assert first_on["data"][1] in [n["pitch"] for n in notes if n["start"] == min(x["start"] for x in notes)]
    ms = 60000 / state(page, "window.cadenza.debug.state.tempo")
    t0 = first_on["timestamp"]
    for m, n in zip(ons, sorted(notes, key=lambda n: n["start"])):
        assert m["timestamp"] - t0 == pytest.approx(n["start"] * ms, abs=1)


def test_download_midi_has_the_person_s_notes_exactly(page, server, tmp_path):
    with page.expect_download(timeout=20_000) as info:
        page.click("#download-midi")
    path = tmp_path / "piece.mid"
    info.value.save_as(path)
    assert info.value.suggested_filename.endswith(".mid")
    score = symusic.Score(str(path), ttype="quarter")
    names = sorted({t.name for t in score.tracks})
    assert names == ["Cadenza", "person"], names
    got = lambda name: sorted((n.pitch, round(n.time, 4), round(n.duration, 4))
                              for t in score.tracks if t.name == name for n in t.notes)
    assert got("person") == sorted(page.played)
    s = api(server, page)
    assert got("Cadenza") == sorted(notes_of(s, "model"))
    # the credit on the page is the export's
    record = api(server, page, "/export?format=json")["provenance"]
    pct = record["credit"]["human_percent"]
    text = page.locator("#credit").inner_text()
    assert text == f"you wrote {round(pct)}% of the notes ({record['credit']['person']} of {len(s['notes'])})"


def test_download_wav(page, tmp_path):
    with page.expect_download(timeout=60_000) as info:
        page.click("#download-wav")
    path = tmp_path / "piece.wav"
    info.value.save_as(path)
    data = path.read_bytes()
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE" and len(data) > 10_000


def test_right_click_deletes_a_note_and_undo_brings_it_back(page, server):
    before = api(server, page)["notes"]
    first = min(before, key=lambda n: (n["start"], n["pitch"]))
    L = state(page, "window.cadenza.debug.state.rollLayout")
    box = page.locator("#roll").bounding_box()
    x = box["x"] + L["left"] + (first["start"] + first["duration"] / 2) * L["beatWidth"]
    y = box["y"] + L["height"] - (first["pitch"] - L["lo"] + 0.5) * L["rowH"]
    page.mouse.click(x, y, button="right")
    settle(page)
    after = api(server, page)["notes"]
    assert after == [n for n in before if n["id"] != first["id"]]
    assert state(page, "window.cadenza.debug.state.selection") == {"from_bar": 1, "to_bar": 2}, "a right-click selects nothing"
    page.keyboard.press("Control+Z")
    settle(page)
    assert api(server, page)["notes"] == before


def test_play_runs_the_playhead_then_screenshot(page, tmp_path):
    wait_for(page, "window.cadenza.debug.state.synth === 'ready'", 30, "the SoundFont")
    assert state(page, "window.cadenza.debug.state.audioState") == "running"
    page.click("#play")
    wait_for(page, "window.cadenza.debug.state.playing && window.cadenza.debug.state.playheadBeat > 0.5", 10, "the playhead")
    page.click("#play")
    wait_for(page, "!window.cadenza.debug.state.playing", 5, "stop")
    # the README's picture: a piece by both, the predictions lit, a continuation previewed
    page.locator("#bars").fill("2")
    page.click("#continue")
    wait_for(page, "window.cadenza.debug.state.suggestion !== null", 30, "a suggestion for the screenshot")
    settle(page)
    page.wait_for_timeout(100)
    target = SHOTS["main"] if os.environ.get("CADENZA_SCREENSHOTS") == "1" else tmp_path / "studio.png"
    page.screenshot(path=str(target), full_page=True)
    assert target.stat().st_size > 10_000
    page.click("#reject")
    settle(page)
    assert state(page, "window.cadenza.debug.state.suggestion") is None


def test_nothing_loaded_from_outside(page):
    assert page.foreign == [], f"the page asked for something outside its server: {page.foreign}"
    assert page.problems == [], page.problems
    assert state(page, "window.cadenza.debug.state.errors") == []
    page.evaluate("() => { const i = new Image(); i.src = 'http://192.0.2.1/x.png'; document.body.append(i); }")
    page.wait_for_timeout(300)
    assert any("192.0.2.1" in u for u in page.foreign), "the guard catches an outside request"


def test_token_goes_on_every_request(model, chromium, tmp_path):
    from cadenza.server.app import create_app

    secret = "t0ken-for-the-studio"
    with serving(create_app(token=secret, prefs_path=tmp_path / "prefs.sqlite3", mm=model)) as url:
        context, pg = open_page(chromium, url, f"/studio?token={secret}")
        api_urls = []
        pg.on("request", lambda r: api_urls.append(r.url) if "/api/" in r.url else None)
        try:
            pg.reload()
            settle(pg, "a session through the token")
            key(pg, 60).click()
            settle(pg)
            assert [n["pitch"] for n in state(pg, "window.cadenza.debug.state.notes")] == [60]
            wait_for(pg, "window.cadenza.debug.state.synth === 'ready'", 30, "the SoundFont through the token")
            assert pg.problems == [] and pg.foreign == []
        finally:
            context.close()
    assert any("/api/studio/sessions" in u for u in api_urls) and any("/api/soundfont" in u for u in api_urls)
    assert all(f"token={secret}" in u for u in api_urls), api_urls
