"""A real server with several WebSocket clients: one client flooding the stream (garbage as fast
as it can, or control changes just under the message rate) neither stalls nor starves another
that plays in real time."""

import json
import threading
import time

import pytest

from conftest import require
from serve_processes import serving

require("miditok")
websockets = require("websockets.sync.client")
closed_error = require("websockets.exceptions").ConnectionClosed

PLAY_S = 8.0


def _listen(url, out):
    """Play in real time (tempo 200), reporting the playhead every 0.25 s; record the lead."""
    bars, leads, playhead = [], [], 0.0
    with websockets.connect(url) as ws:
        json.loads(ws.recv())
        ws.send(json.dumps({"type": "start", "seed": 3, "tempo": 200, "time_signature": "4/4"}))
        last = None
        end = time.monotonic() + PLAY_S
        while time.monotonic() < end:
            try:
                while True:
                    m = json.loads(ws.recv(timeout=0.25))
                    if m["type"] == "notes":
                        bars.append(m)
            except TimeoutError:
                pass
            now = time.monotonic()
            if bars:
                if last is not None:
                    playhead += (now - last) * 200 / 60.0
                last = now
                leads.append(max(b["end_beat"] for b in bars) - playhead)
            ws.send(json.dumps({"type": "playhead", "beat": playhead}))
    out.update(bars=len(bars), leads=leads)


def _garbage(url, out):
    errors = 0
    try:
        with websockets.connect(url) as ws:
            json.loads(ws.recv())
            for bad in ("{not json", json.dumps({"type": "dance"})):   # a few bad messages: an error each
                ws.send(bad)
                errors += json.loads(ws.recv(timeout=10))["type"] == "error"
            for i in range(100000):                                    # then a flood: closed
                ws.send("{not json" if i % 2 else json.dumps({"type": "dance"}))
                try:
                    while json.loads(ws.recv(timeout=0))["type"] == "error":
                        errors += 1
                except TimeoutError:
                    pass
    except closed_error as exc:
        out["code"] = exc.rcvd.code if exc.rcvd else None
    out["errors"] = errors


def _controls(url, out):
    """Valid mood changes at 18 a second, just under the limit: every one asks for a restart."""
    cuts, closed = 0, None
    try:
        with websockets.connect(url) as ws:
            json.loads(ws.recv())
            ws.send(json.dumps({"type": "start", "seed": 5}))
            end = time.monotonic() + PLAY_S
            i = 0
            while time.monotonic() < end:
                ws.send(json.dumps({"type": "control", "energy": 0.05 if i % 2 else 0.95}))
                i += 1
                t = time.monotonic() + 1 / 18
                while (left := t - time.monotonic()) > 0:
                    try:
                        cuts += json.loads(ws.recv(timeout=left))["type"] == "cut"
                    except TimeoutError:
                        break
    except closed_error as exc:
        closed = exc.rcvd.code if exc.rcvd else None
    out.update(cuts=cuts, closed=closed, sent=i)


def test_a_flooding_client_does_not_make_another_run_dry(tmp_path):
    import httpx

    with serving(1, str(tmp_path / "p.sqlite3"), "--max-streams", "8", "--stream-processes", "2") as (base,):
        assert httpx.get(base + "/api/health", timeout=5).json()["stream_processes"] == 2   # streams made in two engines
        url = base.replace("http://", "ws://") + "/api/stream"
        listener, garbage, controls = {}, {}, {}
        threads = [threading.Thread(target=f, args=(url, o)) for f, o in
                   ((_listen, listener), (_garbage, garbage), (_controls, controls))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(PLAY_S + 30)
    assert garbage["code"] == 1008 and garbage["errors"] >= 2      # errors first, then closed
    assert controls["closed"] is None and controls["sent"] > 100
    assert 1 <= controls["cuts"] <= PLAY_S / 0.25 + 2                # restarts merged, at most 4 a second
    assert listener["bars"] >= 4
    assert min(listener["leads"]) > 0, listener["leads"]             # never ran dry


def test_a_strained_decoder_refuses_new_streams_with_a_retry_hint(tmp_path):
    """The decoder's own measure: one more stream than its speed carries (with HEADROOM) is
    refused, and so is any while more playing streams are near dry than one step serves; the
    server closes such a stream with 1013 and a Retry-After hint, before any notes."""
    import asyncio

    from fastapi.testclient import TestClient
    from starlette.websockets import WebSocketDisconnect

    from cadenza.batching import Entry
    from cadenza.music.load import load_model
    from cadenza.server import batcher
    from cadenza.server.access import Access
    from cadenza.server.app import create_app

    mm = load_model()
    d = batcher.StreamDecoder(mm.network, rows=32)
    try:
        now = time.monotonic()
        assert not d.strained(batcher.MEASURING)                 # not measured, idle: room
        d._busy.append((now - 3.0, now, 0.0, 3.0, batcher.MEASURING - 1))   # busy with small steps only
        assert not d.strained(batcher.MEASURING - 1) and d.strained(batcher.MEASURING)
        d._busy.clear()
        # steps of 4 to 32 rows, each 1 ms + 0.1 ms a row: at 32 rows, 32 / 4.2 ms = 7,619 rows a second
        d._busy.extend([(now - 1.0, now - 0.9, 0.0, 0.001 + 0.0001 * n, n) for _ in range(24) for n in (4, 8, 16, 32)])
        assert d.speed() == pytest.approx(32 / 0.0042)
        d._bars.append((now, 700, 100.0))                     # 7 tokens a second of music lately
        assert d.need() == 7.0
        assert not d.strained(900)                            # 901 x 7 = 6,307 <= 0.85 x 7,619 = 6,476
        assert d.strained(950)                                # 951 x 7 = 6,657 > 6,476
        d._busy.append((now - 0.5, now, 2.5, 0.0, 0))         # new streams and restarts took half the window
        assert d.speed() == pytest.approx(16 / 0.0042) and d.strained(470)
        d._busy.clear()
        assert d.speed() == pytest.approx(32 / 0.0042)        # idle lately: the last measure stands
        loop = asyncio.new_event_loop()
        futs = [loop.create_future() for _ in range(3)]
        d.batch.entries = [Entry(now + 0.2, tag=(f, loop, False)) for f in futs]  # three first bars, due soon
        assert not d.strained(0)                              # new streams' first bars are no sign
        d.batch.entries[0].tag = (futs[0], loop, True)        # one listener's bar, due in 0.2 s
        assert d.strained(0)
        d.batch.entries[0].deadline = now + 2 * batcher.LOW_LEAD_S
        assert not d.strained(0)
        d.batch.entries = []
        loop.close()
    finally:
        d.close()
    app = create_app(mm=mm, prefs_path=tmp_path / "p.sqlite3", access=Access.serving("127.0.0.1", ["testserver"]))
    with TestClient(app) as c:
        c.app.state.hub.soundtracks.strained = lambda streams: True
        with c.websocket_connect("/api/stream") as ws:
            try:
                ws.receive_text()
                raise AssertionError("the stream was not refused")
            except WebSocketDisconnect as e:
                assert e.code == 1013 and "Retry-After: 10" in e.reason and "carry" in e.reason
        assert c.app.state.hub.streams == 0
