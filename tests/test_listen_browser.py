"""The /listen page in a real browser: Debian's chromium driven by Playwright (sync API).

The real app (``create_app`` with the shipped default model and a preferences database in a
temporary folder) runs under uvicorn in a background thread on a free loopback port. One
page is opened for the module and the tests walk through a listening session in order:
start and hear notes (synthesizer loaded, AudioContext running with --disable-audio-output,
the roll drawn), the pad steering later segments, like (stored in SQLite), skip (a cut, then
new music), the MIDI download (read back with pretty_midi) and a screenshot. Every request
the page makes must go to the server's own origin. A page served from another local origin
can neither stream nor like, unless the server allows that origin.

``CADENZA_SCREENSHOTS=1`` rewrites docs/listen.png (the README's screenshot); otherwise the
screenshot goes to a temporary folder, so a normal run leaves the tree clean.

The browser comes from Debian (``make test`` installs it, see the Makefile's ``browser``
target); Playwright's own browser download is never used.
"""

from __future__ import annotations

import collections
import os
import sqlite3

import pytest

from browser_fixtures import ROOT, chromium_browser, open_page, page_server, require_chromium, serving, shipped_model
from browser_fixtures import state
from browser_fixtures import sync_api
from conftest import require

pretty_midi = require("pretty_midi")
SCREENSHOT = ROOT / "docs" / "listen.png"
require_chromium()

pytestmark = pytest.mark.timeout(120)


def wait_for(page, js: str, timeout_s: float = 20.0, what: str = ""):
    try:
        page.wait_for_function(js, timeout=timeout_s * 1000, polling=100)
    except sync_api.TimeoutError:
        s = state(page)
        brief = {k: s.get(k) for k in ("connected", "playing", "notesReceived", "notesPlayed", "synth",
                                       "audioState", "playheadBeat", "cuts", "padSends", "errors")}
        brief["segments"] = [(g.get("bar"), g.get("beat"), {k: g.get("controls", {}).get(k) for k in ("valence", "energy")},
                              g.get("chosen_by", {}).get("valence")) for g in s.get("segments", [])[-6:]]
        pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what or js}; page state: {brief}; "
                    f"page problems: {getattr(page, 'problems', None)}")


@pytest.fixture(scope="module")
def model():
    return shipped_model()


@pytest.fixture(scope="module")
def server(model, tmp_path_factory):
    with page_server(model, tmp_path_factory.mktemp("listen")) as running:
        yield running


@pytest.fixture(scope="module")
def chromium():
    with chromium_browser() as browser:
        yield browser


@pytest.fixture(scope="module")
def page(server, chromium):
    context, pg = open_page(chromium, server["url"], "/listen", sockets=True)
    wait_for(pg, "window.cadenza && window.cadenza.debug.state.connected", 20, "the stream's ready message")
    yield pg
    context.close()


def roll_pixels(page) -> int:
    """How many pixels of the roll differ from its background: the notes and the playhead."""
    return page.evaluate("""() => {
        const c = document.getElementById('roll'), g = c.getContext('2d');
        const d = g.getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < d.length; i += 4)
            if (Math.abs(d[i] - 0x12) + Math.abs(d[i + 1] - 0x15) + Math.abs(d[i + 2] - 0x1f) > 40) n++;
        return n;
    }""")


def test_start_plays_notes_in_the_roll(page):
    assert state(page, "window.cadenza.debug.state.ready.styles"), "the ready message lists the styles"
    options = page.locator("#style option").all_inner_texts()
    assert options[0] == "any" and len(options) == 1 + len(state(page, "window.cadenza.debug.state.ready.styles"))
    before = roll_pixels(page)
    page.locator("#tempo").fill("160")  # quick bars keep the test short; also checks the tempo control
    page.click("#start")
    wait_for(page, "window.cadenza.debug.state.notesPlayed > 0", 30, "the first notes to play")
    wait_for(page, "window.cadenza.debug.state.synth === 'ready'", 30, "the SoundFont to load")
    s = state(page)
    assert s["audioState"] == "running"
    assert s["notesReceived"] >= s["notesPlayed"] > 0
    first = s["segments"][0]
    assert first["controls"]["tempo"] == pytest.approx(160, abs=1) and first["chosen_by"]["tempo"] == "listener"
    # the playhead moves with the audio clock, and the roll shows notes and the playhead
    beat0 = s["playheadBeat"]
    wait_for(page, f"window.cadenza.debug.state.playheadBeat > {beat0} + 1", 10, "the playhead to move")
    wait_for(page, "window.cadenza.debug.state.rollNotesDrawn > 0", 5, "notes in the roll")
    after = roll_pixels(page)
    assert after > before + 200, f"the roll drew {after} non-background pixels (before start: {before})"
    status = page.locator("#status").inner_text()
    assert status.startswith("bar ") and "160 bpm" in status, status


def test_mood_pad_steers_later_segments(page):
    s = state(page)
    first = s["segments"][0]["controls"]
    # go to the corner farthest from where the stream started
    right = first["valence"] < 0.5
    top = first["energy"] < 0.5
    box = page.locator("#pad").bounding_box()
    inset = 6  # well inside the pad (its corners are rounded)
    x = box["x"] + (box["width"] - inset if right else inset)
    y = box["y"] + (inset if top else box["height"] - inset)
    n_before = len(s["segments"])
    page.mouse.click(x, y)
    want_v = ">= 0.8" if right else "<= 0.2"
    want_e = ">= 0.8" if top else "<= 0.2"
    wait_for(page, f"""window.cadenza.debug.state.segments.slice({n_before}).some(g =>
                 g.controls.valence {want_v} && g.controls.energy {want_e})""",
             30, f"a later segment with valence {want_v} and energy {want_e}")
    s = state(page)
    assert s["padSends"] >= 1
    later = [g for g in s["segments"][n_before:] if g["chosen_by"].get("valence") == "listener"]
    assert later, "the later segments say the listener chose their valence"
    assert all(g["chosen_by"]["energy"] == "listener" for g in later)
    # the first segment was not there already
    assert (first["valence"] < 0.8 if right else first["valence"] > 0.2) or \
           (first["energy"] < 0.8 if top else first["energy"] > 0.2)


def test_like_is_stored_in_sqlite(page, server):
    page.click("#like")
    wait_for(page, "window.cadenza.debug.state.acks.some(a => a.type === 'liked')", 10, "the like acknowledgement")
    listener = state(page, "window.cadenza.debug.state.listener")
    assert listener == page.evaluate("localStorage.getItem('cadenza.listener')")
    with sqlite3.connect(server["prefs"]) as db:
        rows = db.execute("SELECT kind, style, valence, energy FROM events WHERE listener = ?", (listener,)).fetchall()
    assert [r[0] for r in rows] == ["like"], rows
    wait_for(page, "document.getElementById('prefs').textContent.includes('1 like')", 10,
             "the learned preferences on the page")


def test_screenshot(page, tmp_path):
    """The README's picture: playing, the pad moved and followed, one like learned."""
    wait_for(page, "window.cadenza.debug.state.rollNotesDrawn > 8 && window.cadenza.debug.state.playheadBeat > 12", 15,
             "a fuller roll for the screenshot")
    page.wait_for_timeout(600)
    target = SCREENSHOT if os.environ.get("CADENZA_SCREENSHOTS") == "1" else tmp_path / "listen.png"
    bottom = page.locator("#prefs").bounding_box()
    page.screenshot(path=str(target), clip={"x": 0, "y": 0, "width": 1280, "height": bottom["y"] + bottom["height"] + 20})
    assert target.stat().st_size > 10_000


def test_skip_cuts_and_new_music_follows(page, server):
    before = state(page)
    received, heard_at, n_cuts = before["notesReceived"], before["playheadBeat"], len(before["cuts"])
    page.click("#skip")
    wait_for(page, f"window.cadenza.debug.state.cuts.length > {n_cuts} && "
                   "window.cadenza.debug.state.acks.some(a => a.type === 'skipped')", 15, "a cut after the skip")
    s = state(page)
    cut = s["cuts"][-1]
    assert cut >= heard_at - 0.25, f"the cut at beat {cut} drops music already heard (playhead {heard_at})"
    seq_before = s["lastCut"]["seqBefore"]
    wait_for(page, f"window.cadenza.debug.state.notesReceived > {received} && "
                   f"window.cadenza.debug.state.segments.some(g => g.beat >= {cut})", 20, "new music after the cut")
    # on the page's timeline, every note from the cut on came after it: the old ones were dropped
    later = page.evaluate(f"() => window.cadenza.debug.notes().filter(n => n.start >= {cut})")
    assert later and all(n["seq"] > seq_before for n in later), (cut, seq_before, later[:3])
    listener = s["listener"]
    with sqlite3.connect(server["prefs"]) as db:
        kinds = [r[0] for r in db.execute("SELECT kind FROM events WHERE listener = ? ORDER BY rowid", (listener,))]
    assert kinds == ["like", "skip"]


def test_download_midi_has_the_heard_notes(page, tmp_path):
    with page.expect_download(timeout=10_000) as info:
        page.click("#download")
    path = tmp_path / "heard.mid"
    info.value.save_as(path)
    assert info.value.suggested_filename.endswith(".mid")
    made = state(page, "window.cadenza.debug.state.lastDownload")
    pm = pretty_midi.PrettyMIDI(str(path))
    notes = [n for inst in pm.instruments for n in inst.notes]
    assert len(notes) == made["notes"] > 0
    assert collections.Counter(n.pitch for n in notes) == collections.Counter(made["pitches"])
    assert pm.get_end_time() > 0


def test_nothing_loaded_from_outside_then_stop_and_start_again(page):
    assert page.foreign == [], f"the page asked for something outside its server: {page.foreign}"
    assert page.problems == [], page.problems  # no page error, no console error (a 404 is one)
    assert state(page, "window.cadenza.debug.state.errors") == []
    # and the guard does catch an outside request
    page.evaluate("() => { const i = new Image(); i.src = 'http://192.0.2.1/x.png'; document.body.append(i); }")
    page.wait_for_timeout(300)
    assert any("192.0.2.1" in u for u in page.foreign)
    page.click("#start")  # stop
    wait_for(page, "!window.cadenza.debug.state.playing && !window.cadenza.debug.state.connected", 5, "stop")
    # and Start again: a new stream on a new socket, from beat 0
    page.click("#start")
    wait_for(page, "window.cadenza.debug.state.playing && window.cadenza.debug.state.notesPlayed > 0", 30, "a second start")
    s = state(page)
    assert s["cuts"] == [] and s["segments"][0]["beat"] == 0 and s["playheadBeat"] < 16
    page.click("#start")
    wait_for(page, "!window.cadenza.debug.state.playing", 5, "stop")


def test_token_goes_on_every_request(model, chromium, tmp_path):
    """A server that needs a token: the page, opened with ?token=T, passes it on to the stream
    and to every API request (not only the cookie), and plays."""
    from cadenza.server.app import create_app

    secret = "t0ken-for-the-test"
    with serving(create_app(token=secret, prefs_path=tmp_path / "prefs.sqlite3", mm=model)) as url:
        context = chromium.new_context()
        pg = context.new_page()
        api, sockets = [], []
        pg.on("request", lambda r: api.append(r.url) if "/api/" in r.url else None)
        pg.on("websocket", lambda ws: sockets.append(ws.url))
        try:
            denied = pg.goto(url + "/listen")
            assert denied.status == 401, "the server asks for its token"
            pg.goto(f"{url}/listen?token={secret}")
            wait_for(pg, "window.cadenza.debug.state.connected", 20, "the stream's ready message with the token")
            pg.click("#start")
            wait_for(pg, "window.cadenza.debug.state.notesPlayed > 0 && window.cadenza.debug.state.synth === 'ready'", 30,
                     "notes and the SoundFont through the token")
            wait_for(pg, "window.cadenza.debug.state.preferences !== null", 10, "the listener's preferences")
            pg.click("#start")  # stop
        finally:
            context.close()
    assert sockets and all(f"token={secret}" in u for u in sockets), sockets
    assert any("/api/soundfont" in u for u in api) and any("/api/listener/" in u for u in api), api
    assert all(f"token={secret}" in u for u in api), api


def test_preferences_off_the_page_says_so_and_plays(model, chromium, tmp_path):
    """A corrupt preferences database: the server runs with preferences off, the page says so
    in words, still plays, and the file is left as it was."""
    from cadenza.server.app import create_app

    broken = tmp_path / "prefs.sqlite3"
    broken.write_bytes(b"this is not an SQLite database\n" * 64)
    before = broken.read_bytes()
    with serving(create_app(prefs_path=broken, mm=model)) as url:
        context = chromium.new_context()
        pg = context.new_page()
        try:
            pg.goto(url + "/listen")
            wait_for(pg, "window.cadenza.debug.state.connected", 20, "the stream's ready message")
            text = pg.locator("#prefs").inner_text()
            assert text.startswith("Preferences are off") and "still plays" in text, text
            # the pad's very corners register (before Start: remembered, then sent with start)
            box = pg.locator("#pad").bounding_box()
            for dx, dy, v, e in [(1, 1, 0, 1), (-1, 1, 1, 1), (1, -1, 0, 0), (-1, -1, 1, 0)]:
                pg.mouse.click(box["x"] + (dx if dx > 0 else box["width"] + dx),
                               box["y"] + (dy if dy > 0 else box["height"] + dy))
                got = state(pg, "window.cadenza.debug.state.pad")
                assert got["touched"] and got["valence"] == pytest.approx(v, abs=0.02) \
                    and got["energy"] == pytest.approx(e, abs=0.02), (dx, dy, got)
            pg.focus("#pad")
            pg.keyboard.press("ArrowUp")  # arrows move it too: now valence 1, energy 0.05
            pg.click("#start")
            wait_for(pg, "window.cadenza.debug.state.notesPlayed > 0", 30, "notes with preferences off")
            first = state(pg, "window.cadenza.debug.state.segments[0]")
            assert first["chosen_by"]["valence"] == first["chosen_by"]["energy"] == "listener", first
            assert first["controls"]["valence"] >= 0.8 and first["controls"]["energy"] <= 0.2, first
            pg.click("#like")
            wait_for(pg, "window.cadenza.debug.state.acks.length > 0", 10, "the like's acknowledgement")
            assert pg.locator("#prefs").inner_text() == text
            pg.click("#start")  # stop
        finally:
            context.close()
    assert broken.read_bytes() == before


FOREIGN_PAGE = """<!doctype html><title>another site</title><script>
const target = new URLSearchParams(location.search).get("target");
window.result = {messages: [], closed: null};
const ws = new WebSocket(`ws://${target}/api/stream?listener=victim`);
ws.onopen = () => ws.send(JSON.stringify({type: "start", seed: 1}));
ws.onmessage = (m) => {
  const type = JSON.parse(m.data).type;
  if (type === "notes" && !result.messages.includes("notes")) ws.send(JSON.stringify({type: "like"}));
  result.messages.push(type);
  if (type === "liked") ws.close(1000);
};
ws.onclose = (e) => { result.closed = {code: e.code, reason: e.reason}; };
// a POST with no body needs no CORS preflight: the browser sends it (the page never sees the answer)
fetch(`http://${target}/api/studio/sessions`, {method: "POST", mode: "no-cors"}).then(() => {}, () => {});
</script>"""


def test_a_page_from_another_origin_can_neither_stream_nor_like(model, server, chromium, tmp_path):
    """A page served from a second local origin (another port) opens the stream and likes,
    and creates a studio session: refused (close 4403, 403), nothing stored. The same page
    from an origin the server allows with --allow-origin does all three."""
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    from cadenza.server.access import Access
    from cadenza.server.app import create_app

    site = Starlette(routes=[Route("/", lambda request: HTMLResponse(FOREIGN_PAGE))])

    def visit(site_url: str, target: str) -> tuple[dict, list]:
        context = chromium.new_context()
        pg = context.new_page()
        posts = []
        pg.on("response", lambda r: posts.append(r.status) if r.request.method == "POST" else None)
        try:
            pg.goto(f"{site_url}/?target={target.split('//')[1]}")
            wait_for(pg, "window.result.closed !== null", 30, "the stream to close")
            pg.wait_for_timeout(200)
            return state(pg, "window.result"), posts
        finally:
            context.close()

    with serving(site) as site_url:
        result, posts = visit(site_url, server["url"])
        assert result["messages"] == [] and result["closed"]["code"] == 4403, result
        assert result["closed"]["reason"] == (f"streams from pages at {site_url} are refused: start the server "
                                              f"with --allow-origin {site_url}")
        assert posts == [403], posts
        with sqlite3.connect(server["prefs"]) as db:
            assert db.execute("SELECT COUNT(*) FROM events WHERE listener = 'victim'").fetchone() == (0,)
        prefs = tmp_path / "prefs.sqlite3"
        with serving(create_app(prefs_path=prefs, mm=model, access=Access.serving("127.0.0.1", (), [site_url]))) \
                as allowing:
            result, posts = visit(site_url, allowing)
        assert result["messages"][0] == "ready" and "liked" in result["messages"], result
        assert result["closed"]["code"] == 1000 and posts == [201], (result, posts)
        with sqlite3.connect(prefs) as db:
            assert db.execute("SELECT kind FROM events WHERE listener = 'victim'").fetchall() == [("like",)]
