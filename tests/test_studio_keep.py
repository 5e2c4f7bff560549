"""The studio keeps the person's music (issue 23, item 5), on the shipped model: infill keeps
the person's notes by default and writes around them (or keeps every note and only adds a
role); harmonize covers the whole piece or the selected bars; predictions continue the voice
the person plays; the Key selector conditions the model, before and after notes."""

import pytest

from conftest import require

require("fastapi")

from fastapi.testclient import TestClient  # noqa: E402

from cadenza.codecs.music import parse_key  # noqa: E402
from cadenza.errors import ConfigError  # noqa: E402
from cadenza.music.constraints import ROLES, Constraints  # noqa: E402
from cadenza.music.load import load_model  # noqa: E402
from cadenza.music.modes import scale_of  # noqa: E402
from cadenza.music.studio import StudioSession  # noqa: E402
from cadenza.music.studio_notes import PERSON, SNote  # noqa: E402

MELODY = [60, 62, 64, 65, 67, 65, 64, 62, 60, 64, 67, 72, 71, 67, 64, 60]


@pytest.fixture(scope="module")
def mm():
    return load_model()


def piece(mm, gaps=False, key="C"):
    """The tune on quarter notes over 4 bars; ``gaps``: every other note of bars 2-3 left out."""
    s = StudioSession(mm, tempo=100, key=key)
    s.play([{"pitch": p, "start": float(i), "duration": 1.0} for i, p in enumerate(MELODY)
            if not (gaps and 4 <= i < 12 and i % 2)])
    return s


def person(s):
    return {i: n.to_dict() for i, n in s.notes.items() if n.by == PERSON}


def test_infill_keeps_the_persons_notes_and_writes_around_them(mm):
    s = piece(mm, gaps=True)
    mine = person(s)
    sg = s.suggest("infill", from_bar=1, to_bar=3, k=4, seed=1)            # the default: keep="person"
    assert sg.request["keep"] == "person" and sg.replaces == []
    assert sg.info["kept"] == 4 and sg.info["kept_written"] == 4, "the kept notes were written where they are"
    assert sg.notes and all(4.0 <= n.start < 12.0 for n in sg.notes)
    held = {(n["start"], n["pitch"]) for n in mine.values()}
    assert not {(n.start, n.pitch) for n in sg.notes} & held, "no note doubles a kept one"
    s.accept(sg.id)
    assert person(s) == mine, "every note of the person's stays, ids and all"
    # the model's notes there are what a second infill replaces; the person's still stay
    model_ids = sorted(i for i, n in s.notes.items() if n.by != PERSON and 4.0 <= n.start < 12.0)
    again = s.suggest("infill", from_bar=1, to_bar=3, k=2, seed=2)
    assert sorted(again.replaces) == model_ids
    rewrite = s.suggest("infill", from_bar=1, to_bar=3, k=2, seed=2, keep="none")
    assert set(rewrite.replaces) >= {i for i, n in mine.items() if 4.0 <= n["start"] < 12.0}


def test_infill_keep_all_adds_only_the_chosen_role(mm):
    s = piece(mm)
    before = {i: n.to_dict() for i, n in s.notes.items()}
    sg = s.suggest("infill", from_bar=1, to_bar=3, k=2, seed=1, keep="all", constraints=Constraints(role="bass"))
    assert sg.replaces == [] and sg.info["kept"] == 8
    lo, hi, _, _ = ROLES["bass"]
    assert sg.notes and all(lo <= n.pitch <= hi for n in sg.notes)
    onsets = {n.start for n in sg.notes}
    assert onsets & {float(i) for i in range(4, 12)}, "a bass note joins a kept melody note at its onset"
    s.accept(sg.id)
    assert {i: n.to_dict() for i, n in s.notes.items() if i in before} == before
    with pytest.raises(ConfigError):
        s.suggest("infill", from_bar=1, to_bar=3, keep="mine")


def test_harmonize_covers_the_whole_piece_or_the_selected_bars(mm):
    s = StudioSession(mm, tempo=100)
    s.play([{"pitch": p, "start": float(i), "duration": 1.0} for i, p in enumerate(MELODY[:8])])   # bars 1-2
    s.accept(s.suggest("continue", bars=2, seed=3).id)                                          # bars 3-4: the model's
    assert max(n.start for n in s.notes.values()) >= 8.0
    whole = s.suggest("harmonize", voices=2, seed=1)
    bars = {int(n.start // 4) for n in whole.notes}
    assert {0, 1} <= bars and bars & {2, 3}, f"voices under the model's bars too: {sorted(bars)}"
    from cadenza.music.studio_notes import line

    top = {n.id for n in line(list(s.notes.values()))}
    assert not set(whole.replaces) & top and all(s.notes[i].by != PERSON for i in whole.replaces)
    part = s.suggest("harmonize", voices=2, seed=1, from_bar=2, to_bar=4)
    assert part.notes and all(8.0 <= n.start < 16.0 for n in part.notes)
    with pytest.raises(ConfigError):
        s.suggest("harmonize", from_bar=6, to_bar=7)      # no notes there


def test_predictions_follow_the_melody_after_harmonize(mm):
    s = piece(mm)
    before = [p["pitch"] for p in s.predictions()]
    s.accept(s.suggest("harmonize", voices=3, seed=1).id)
    assert min(n.pitch for n in s.notes.values()) < min(MELODY) - 5, "voices under the melody"
    after = [p["pitch"] for p in s.predictions()]
    assert after == before, "the melody's next note, not the bass's"
    assert all(p >= min(MELODY) - 5 for p in after)


def test_the_followed_voice():
    from cadenza.music.studio_notes import followed_voice

    def n(i, pitch, start, by="model", dur=1.0):
        return SNote(id=i, pitch=pitch, start=start, duration=dur, by=by)

    melody = [n(1, 72, 0, PERSON), n(2, 74, 1, PERSON, dur=0.5), n(3, 76, 2, PERSON)]
    under = [n(10, 48, 0), n(11, 55, 0), n(12, 50, 1), n(13, 52, 2), n(14, 60, 1.5, dur=0.5)]
    assert [x.id for x in followed_voice(melody + under)] == [1, 2, 14, 3]   # the top line (14 sounds alone)
    bass = [n(1, 40, 0, PERSON), n(2, 43, 1, PERSON)]
    tune = [n(10, 72, 0), n(11, 74, 1), n(12, 76, 2)]
    assert [x.id for x in followed_voice(bass + tune)] == [1, 2]             # the person's bass line
    assert [x.id for x in followed_voice(tune)] == [10, 11, 12]               # nobody played: the top line
    assert followed_voice([]) == []


def in_key(preds, key):
    sc = scale_of(*parse_key(key))
    return sum(p["pitch"] % 12 in sc for p in preds)


def test_the_key_selector_conditions_the_model_before_and_after_notes(mm):
    empty = StudioSession(mm, key="C")
    assert in_key(empty.predictions(), "C") == 5, [p["name"] for p in empty.predictions()]
    s = StudioSession(mm, key="C")
    s.play([{"pitch": 60, "start": 0.0, "duration": 1.0}])
    sg = s.suggest("continue", bars=1, seed=1)
    s.set_key("Ab")                       # C is in A-flat major; D, E, G, A, B are not
    assert in_key(s.predictions(), "Ab") >= 4, [p["name"] for p in s.predictions()]
    assert s.key == "Ab" and s.state()["key"] == "Ab" and len(s.notes) == 1
    with pytest.raises(KeyError):
        s.accept(sg.id)                   # made under the old key
    with pytest.raises(ConfigError):
        s.set_key("H")
    assert s.key == "Ab"


def test_api_keep_harmonize_bars_and_key(mm, tmp_path):
    from cadenza.server.app import create_app

    with TestClient(create_app(mm=mm, prefs_path=tmp_path / "p.sqlite3"), base_url="http://127.0.0.1") as c:
        sid = c.post("/api/studio/sessions", json={"key": "C"}).json()["session"]
        url = f"/api/studio/sessions/{sid}"
        r = c.post(url + "/notes", json={"notes": [{"pitch": p, "start": i, "duration": 1}
                                                   for i, p in enumerate(MELODY[:8])]})
        mine = {n["id"] for n in r.json()["notes"]}
        g = c.post(url + "/suggest", json={"kind": "infill", "from_bar": 1, "to_bar": 2, "k": 2}).json()
        assert g["request"]["keep"] == "person" and g["replaces"] == [] and g["info"]["kept"] == 4
        assert c.post(url + "/suggest", json={"kind": "infill", "from_bar": 1, "to_bar": 2,
                                              "keep": "mine"}).status_code == 422
        h = c.post(url + "/suggest", json={"kind": "harmonize", "from_bar": 1, "to_bar": 2}).json()
        assert h["notes"] and all(4 <= n["start"] < 8 for n in h["notes"])
        assert c.post(url + "/suggest", json={"kind": "harmonize", "from_bar": 5, "to_bar": 6}).status_code == 422
        k = c.patch(url, json={"key": "F"})
        assert k.status_code == 200 and k.json()["key"] == "F" and len(k.json()["predictions"]) == 5
        assert {n["id"] for n in k.json()["notes"]} == mine and k.json()["suggestions"] == []
        assert c.patch(url, json={"key": "H"}).status_code == 422
        assert c.patch(url, json={"tempo": 90}).status_code == 422
        assert c.get(url).json()["key"] == "F"
