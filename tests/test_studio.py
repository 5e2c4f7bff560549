"""Cadenza Studio (cadenza.music.studio and /api/studio): predictions from a kept cache,
suggestions under constraints, infilling that changes only the chosen bars, undo/redo,
export with credit, and the API's answers to bad notes, wrong and expired sessions."""

import base64

import pytest

from conftest import require

require("fastapi")

from fastapi.testclient import TestClient  # noqa: E402

from cadenza.errors import ConfigError  # noqa: E402
from cadenza.music.constraints import Constraints, check  # noqa: E402
from cadenza.music.infill import open_bar, prime, right_bits  # noqa: E402
from cadenza.music.load import load_model  # noqa: E402
from cadenza.music.studio import StudioSession  # noqa: E402

MELODY = [60, 62, 64, 65, 67, 65, 64, 62, 60, 64, 67, 72, 71, 67, 64, 60]


@pytest.fixture(scope="module")
def mm():
    return load_model()


def session(mm, n=16):
    s = StudioSession(mm, tempo=100)
    s.play([{"pitch": p, "start": float(i), "duration": 1.0} for i, p in enumerate(MELODY[:n])])
    return s


def test_a_played_note_is_a_few_cached_steps_and_matches_a_fresh_read(mm):
    s = session(mm, 8)
    s.predictions()
    before = s.steps_read
    s.play([{"pitch": 60, "start": 8.0, "duration": 1.0}])
    p = s.predictions()
    assert s.steps_read - before <= 4                 # Position, Pitch, Duration (and a Bar): not a re-read
    fresh = session(mm, 8)
    fresh.play([{"pitch": 60, "start": 8.0, "duration": 1.0}])
    q = fresh.predictions()
    assert [x["pitch"] for x in p] == [x["pitch"] for x in q]
    assert [x["probability"] for x in p] == pytest.approx([x["probability"] for x in q], abs=2e-3)
    assert len(p) == 5 and p[0]["probability"] >= p[-1]["probability"] and sum(x["probability"] for x in p) <= 1
    before = s.steps_read
    s.play([{"pitch": 79, "start": 0.5, "duration": 0.5}])     # a note inserted earlier (in the top line): read again
    s.predictions()
    assert s.steps_read - before > 20


def test_continue_and_answer_keep_their_constraints_and_place(mm):
    s = session(mm)
    c = Constraints(scale="C", role="melody", density="medium")
    sg = s.suggest("continue", bars=4, constraints=c, seed=3)
    notes = [n.to_dict() for n in sg.notes]
    assert notes and check(notes, c, s.remi.ppb) == []
    assert min(n["start"] for n in notes) > 15.0 - 1e-9          # after the piece's last onset
    assert sg.replaces == []
    ans = s.suggest("answer", bars=2, seed=4)
    assert ans.notes and min(n.start for n in ans.notes) >= 16.0 - 1e-9   # from the next bar line


def test_without_constraints_the_same_request_leaves_the_scale(mm):
    s = session(mm)
    c = Constraints(scale="F#")        # F# major has none of the melody's C, F: only the lock keeps notes in it
    locked = s.suggest("continue", bars=4, constraints=c, seed=5)
    assert locked.notes and check([n.to_dict() for n in locked.notes], c, s.remi.ppb) == []
    free = s.suggest("continue", bars=4, seed=5)
    assert check([n.to_dict() for n in free.notes], c, s.remi.ppb)   # the model alone would not keep to F#


def test_infill_changes_only_the_chosen_bars(mm):
    s = session(mm)
    outside = {i: n.to_dict() for i, n in s.notes.items() if not 4.0 <= n.start < 12.0}
    sg = s.suggest("infill", from_bar=1, to_bar=3, k=4, constraints=Constraints(scale="C"), seed=1, keep="none")
    assert sorted(sg.replaces) == sorted(i for i, n in s.notes.items() if 4.0 <= n.start < 12.0)
    assert all(4.0 <= n.start < 12.0 for n in sg.notes) and sg.notes
    assert check([n.to_dict() for n in sg.notes], Constraints(scale="C"), s.remi.ppb) == []
    bits = sg.info["right_bits_per_token"]
    assert len(bits) == 4 and sg.info["chosen"] == min(range(4), key=lambda j: bits[j])
    s.accept(sg.id)
    kept = {i: n.to_dict() for i, n in s.notes.items() if i in outside}
    assert kept == outside                                      # untouched, ids and all
    assert {n.by for n in s.notes.values() if 4.0 <= n.start < 12.0} == {"model"}
    with pytest.raises(ConfigError):
        s.suggest("infill", from_bar=3, to_bar=3)


def test_undo_redo_and_suggestions_go_stale(mm):
    s = session(mm, 4)
    first = {i: n.to_dict() for i, n in s.notes.items()}
    sg = s.suggest("continue", bars=2, seed=1)
    s.accept(sg.id)
    after = {i: n.to_dict() for i, n in s.notes.items()}
    assert len(after) > len(first)
    assert s.undo() and {i: n.to_dict() for i, n in s.notes.items()} == first
    assert s.redo() and {i: n.to_dict() for i, n in s.notes.items()} == after
    sg = s.suggest("continue", bars=2, seed=2)
    s.play([{"pitch": 70, "start": 30.0, "duration": 1.0}])
    with pytest.raises(KeyError):
        s.accept(sg.id)                                        # made against a piece that has changed


def test_export_names_tracks_by_author_and_keeps_the_persons_notes_exactly(mm, tmp_path):
    import symusic

    from cadenza.music.authorship.provenance import verify

    s = session(mm, 8)
    s.accept(s.suggest("continue", bars=2, seed=1).id)
    data, record = s.export()
    score = symusic.Score.from_midi(data)
    tracks = {t.name: t for t in score.tracks}
    assert set(tracks) == {"person", "Cadenza"}
    got = sorted((n.time / score.ticks_per_quarter, n.pitch, n.duration / score.ticks_per_quarter)
                 for n in tracks["person"].notes)
    assert got == sorted((float(i), p, 1.0) for i, p in enumerate(MELODY[:8]))
    assert record["credit"]["person"] == 8 and 0 < record["credit"]["human_percent"] < 100
    path = tmp_path / "together.mid"
    path.write_bytes(data)
    assert verify(path).status == "unchanged"


@pytest.mark.parametrize("bad", [{"pitch": 200, "start": 0, "duration": 1}, {"pitch": 60, "start": -1, "duration": 1},
                                 {"pitch": 60, "start": 0, "duration": -0.5}, {"pitch": 60.5, "start": 0, "duration": 1},
                                 {"start": 0, "duration": 1}])
def test_bad_notes_are_refused_and_change_nothing(mm, bad):
    s = session(mm, 2)
    before = {i: n.to_dict() for i, n in s.notes.items()}
    with pytest.raises(ConfigError):
        s.play([{"pitch": 64, "start": 5, "duration": 1}, bad])
    assert {i: n.to_dict() for i, n in s.notes.items()} == before and len(s.undo_stack) == 1


# --------------------------------------------------------------------------- the API
@pytest.fixture()
def client(mm, tmp_path):
    from cadenza.server.app import create_app

    with TestClient(create_app(mm=mm, prefs_path=tmp_path / "p.sqlite3"), base_url="http://127.0.0.1") as c:
        yield c


def test_api_session_round_trip(client):
    r = client.post("/api/studio/sessions", json={"tempo": 90})
    assert r.status_code == 201 and len(r.json()["predictions"]) == 5
    sid = r.json()["session"]
    r = client.post(f"/api/studio/sessions/{sid}/notes",
                    json={"notes": [{"pitch": p, "start": i, "duration": 1} for i, p in enumerate(MELODY[:8])]})
    assert r.status_code == 200 and len(r.json()["notes"]) == 8 and r.json()["predictions"]
    person_ids = {n["id"] for n in r.json()["notes"]}
    g = client.post(f"/api/studio/sessions/{sid}/suggest", json={"kind": "infill", "from_bar": 0, "to_bar": 1, "k": 2,
                                                                  "keep": "none"})
    assert g.status_code == 200, g.text
    gid = g.json()["id"]
    replaced = set(g.json()["replaces"])
    r = client.post(f"/api/studio/sessions/{sid}/suggestions/{gid}/accept")
    ids_now = {n["id"] for n in r.json()["notes"]}
    assert person_ids - replaced <= ids_now and not (replaced & ids_now)
    assert client.post(f"/api/studio/sessions/{sid}/undo").status_code == 200
    assert {n["id"] for n in client.get(f"/api/studio/sessions/{sid}").json()["notes"]} == person_ids
    m = client.get(f"/api/studio/sessions/{sid}/export?format=midi")
    assert m.status_code == 200 and m.content[:4] == b"MThd"
    j = client.get(f"/api/studio/sessions/{sid}/export").json()
    assert base64.b64decode(j["midi_base64"]) [:4] == b"MThd" and j["provenance"]["credit"]["person"] == 8


def test_api_errors(client, monkeypatch):
    import cadenza.server.studio_sessions as st

    assert client.get("/api/studio/sessions/nope").status_code == 404
    sid = client.post("/api/studio/sessions", json={}).json()["session"]
    url = f"/api/studio/sessions/{sid}"
    assert client.post(url + "/notes", json={"notes": [{"pitch": 300, "start": 0, "duration": 1}]}).status_code == 422
    assert client.post(url + "/notes", json={"notes": [{"pitch": 60, "start": 0, "duration": -1}]}).status_code == 422
    many = {"notes": [{"pitch": 60, "start": i, "duration": 1} for i in range(600)]}
    assert client.post(url + "/notes", json=many).status_code == 422
    assert client.post(url + "/suggest", json={"kind": "continue"}).status_code == 422     # nothing to continue
    assert client.post(url + "/suggest", json={"kind": "sing"}).status_code == 422
    assert client.post(url + "/suggestions/99/accept").status_code == 404
    assert client.post(url + "/undo").status_code == 409
    assert client.post(url + "/delete", json={"ids": [12345]}).status_code == 404
    assert client.post("/api/studio/sessions", json={"tempo": 1000}).status_code == 422
    assert client.post("/api/studio/sessions", json={"style": "techno"}).status_code == 422
    r = client.post("/api/studio/sessions", json={"style": None, "tempo": 30})   # the model chooses the style
    assert r.status_code == 201 and r.json()["style"] and len(r.json()["predictions"]) == 5, r.text
    monkeypatch.setattr(st, "MAX_SESSIONS", len(client.app.state.hub.studio.items))   # the server is full
    full = client.post("/api/studio/sessions", json={})
    assert full.status_code == 503 and full.headers["retry-after"] == "60" and "limit" in full.json()["detail"]
    assert client.get(url).status_code == 200, "the open sessions stay open"
    monkeypatch.setattr(st, "SESSION_IDLE_S", -1.0)           # every session is now past its idle time
    r = client.get(url)
    assert r.status_code == 404 and "expired" in r.json()["detail"]


def test_infill_scoring_from_the_shared_left_context_equals_a_full_read(mm):
    s = session(mm)
    a, b = 4.0, 12.0
    left = [n for n in s.notes.values() if n.start < a]
    inside = [n for n in s.notes.values() if a <= n.start < b]
    right = [n for n in s.notes.values() if n.start >= b]
    primed = prime(s, open_bar(s, left, 1))
    full = right_bits(s, left, inside, right, 3)
    assert right_bits(s, left, inside, right, 3, primed) == pytest.approx(full, abs=0.02)
    assert right_bits(s, left, [], right, 3, primed) == pytest.approx(right_bits(s, left, [], right, 3), abs=0.02)
