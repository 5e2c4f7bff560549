"""Play along in the studio's server (WS /api/studio/sessions/{sid}/live), with a tiny model:
a phrase played in real time over the socket, the accompaniment sent ahead of its time, the
take kept into the piece with its authors, export and credit as for any studio piece, and
the socket's answers to bad messages and unknown sessions."""

import base64
import time

import pytest

from conftest import require

require("fastapi")
symusic = require("symusic")

from fastapi.testclient import TestClient  # noqa: E402

from music_fixtures import tiny_model  # noqa: E402

TUNE = [60, 64, 67, 65, 64, 62, 60, 62, 64, 65, 67, 67]


@pytest.fixture(scope="module")
def client():
    from cadenza.server.access import Access
    from cadenza.server.app import create_app

    app = create_app(mm=tiny_model(), preferences=False, access=Access.serving("127.0.0.1", ["testserver"]))
    with TestClient(app, base_url="http://testserver") as c:   # TestClient's Host (and its WebSockets')
        yield c


def new_session(client):
    r = client.post("/api/studio/sessions", json={"tempo": 150, "key": "C"})
    assert r.status_code == 201
    return r.json()["session"]


def messages(ws, until):
    out = []
    while True:
        m = ws.receive_json()
        out.append(m)
        if m["type"] == until:
            return out


@pytest.mark.timeout(60)
def test_a_phrase_played_over_the_socket_is_accompanied_and_kept(client):
    sid = new_session(client)
    client.post(f"/api/studio/sessions/{sid}/notes", json={"notes": [{"pitch": 72, "start": 0, "duration": 4}]})
    spb = 60 / 150
    with client.websocket_connect(f"/api/studio/sessions/{sid}/live") as ws:
        t0 = time.monotonic()
        page = lambda: (time.monotonic() - t0) * 1000 + 5000.0          # the page's clock, in ms  # noqa: E731
        sent = page()
        ws.send_json({"type": "start", "now": sent, "role": "chords", "count_in": 2, "tempo": 150})
        ready = ws.receive_json()
        assert ready["type"] == "ready"
        assert sent + 300 + 2 * spb * 1000 <= ready["origin"] <= page() + 300 + 2 * spb * 1000
        origin = ready["origin"]
        for k, p in enumerate(TUNE):
            on = origin + k * spb * 1000
            time.sleep(max(0.0, (on - page()) / 1000))
            ws.send_json({"type": "on", "pitch": p, "velocity": 90, "t": on})
            time.sleep(0.8 * spb)
            ws.send_json({"type": "off", "pitch": p, "t": page()})
        time.sleep(2 * spb)
        ws.send_json({"type": "bogus"})
        ws.send_json({"type": "keep"})
        got = messages(ws, "kept")
    errors = [m for m in got if m["type"] == "error"]
    assert len(errors) == 1 and "unknown message type" in errors[0]["reason"]
    events = [e for m in got if m["type"] == "events" for e in m["events"]]
    clicks = [e for e in events if e["role"] == "click" and e["on"]]
    chords = [e for e in events if e["role"] == "chords" and e["on"]]
    assert len(clicks) == 2
    assert len(chords) >= 2 * (len(TUNE) - 2)                 # two or three notes on nearly every beat
    assert all(e["t"] > e["decided"] for e in events if e["on"])        # sent ahead of their time
    assert all(e["t"] >= e["decided"] for e in events)                  # (the note-offs of Keep: at once)
    dev = [round((e["t"] - origin) / (spb * 1000) - e["beat"], 3) for e in chords]
    assert max(map(abs, dev)) < 0.05, dev   # on the page's grid
    kept = got[-1]
    assert kept["offset"] == 4 and len(kept["ids"]) >= len(TUNE) + len(chords) - 3
    piece = client.get(f"/api/studio/sessions/{sid}").json()
    person = sorted((n["start"], n["pitch"]) for n in piece["notes"] if n["by"] == "person")
    assert [p for _, p in person] == [72] + TUNE
    assert [round(s * 4) / 4 for s, _ in person[1:]] == [4.0 + k for k in range(len(TUNE))]
    assert sum(1 for n in piece["notes"] if n["by"] == "model") >= len(chords) - 3
    data = base64.b64decode(client.get(f"/api/studio/sessions/{sid}/export").json()["midi_base64"])
    s = symusic.Score.from_midi(data)
    assert {t.name for t in s.tracks} == {"person", "Cadenza"}
    assert any("Cadenza" in m.text and "% of the notes by the person" in m.text for m in s.markers)


def test_the_socket_refuses_what_it_cannot_do(client):
    from starlette.websockets import WebSocketDisconnect

    with pytest.raises(WebSocketDisconnect) as e:
        with client.websocket_connect("/api/studio/sessions/nope/live") as ws:
            ws.receive_json()
    assert e.value.code == 4404
    sid = new_session(client)
    with client.websocket_connect(f"/api/studio/sessions/{sid}/live") as ws:
        ws.send_json({"type": "on", "pitch": 60, "t": 0})
        assert "send start first" in ws.receive_json()["reason"]
        ws.send_json({"type": "start", "now": 0, "role": "drums"})
        assert "unknown role" in ws.receive_json()["reason"]
        ws.send_json({"type": "start", "now": 0, "tempo": 1000})
        assert "tempo must be" in ws.receive_json()["reason"]
        ws.send_json({"type": "keep"})
        assert "play along first" in ws.receive_json()["reason"]
        ws.send_text("x" * 5000)
        with pytest.raises(WebSocketDisconnect) as e:
            ws.receive_json()
        assert e.value.code == 1009
