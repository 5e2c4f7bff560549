"""Listener preferences (cadenza.server.prefs): stored in SQLite, learned per region, and
shifting the controls a stream chooses towards what was liked and away from what was skipped."""

import random
import sqlite3

import pytest

from cadenza.server.prefs import SCHEMA_VERSION, Preferences, PrefsError

STYLES = ["bach", "renaissance", "medieval", "folk", "fiddle"]


def test_records_persist_with_schema_version_and_wal(tmp_path):
    p = Preferences(tmp_path / "p.sqlite3")
    p.record("ann", "like", {"style": "folk", "valence": 0.9, "energy": 0.1, "tempo": 96, "key": "D"})
    p.record("ann", "skip", {"style": "bach", "valence": 0.2, "energy": 0.9, "tempo": 150})
    p.record("other", "skip", {"style": "folk"})
    p.close()
    db = sqlite3.connect(tmp_path / "p.sqlite3")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
    again = Preferences(tmp_path / "p.sqlite3")
    got = again.learned("ann")
    assert got["likes"] == 1 and got["skips"] == 1
    assert got["more"] == ["calm", "bright", "folk", "90-110 bpm"]
    assert got["less"] == ["energetic", "sad", "bach", "150-170 bpm"]
    assert got["summary"] == "more: calm, bright, folk, 90-110 bpm; less: energetic, sad, bach, 150-170 bpm"
    assert again.learned("nobody")["summary"] == "nothing yet"


def _draws(p, listener, n=3000):
    choose = p.chooser(listener, STYLES)
    rng = random.Random(0)
    return [choose(rng, None) for _ in range(n)]


def test_likes_come_more_often_and_skips_less(tmp_path):
    p = Preferences(tmp_path / "p.sqlite3")
    assert _draws(p, "new", 10) == [{}] * 10          # no feedback: everything stays with the model
    for _ in range(3):
        p.record("ann", "like", {"style": "folk", "energy": 0.1, "tempo": 100})
    for _ in range(3):
        p.record("ann", "skip", {"style": "bach", "energy": 0.9, "tempo": 160})
    draws = _draws(p, "ann")
    share = lambda key, pred: sum(pred(d[key]) for d in draws) / len(draws)  # noqa: E731
    assert share("style", lambda s: s == "folk") > 0.4          # uniform would be 0.2
    assert share("style", lambda s: s == "bach") < 0.1
    assert share("energy", lambda e: e < 0.2) > 0.4
    assert share("energy", lambda e: e > 0.8) < 0.1
    assert share("tempo", lambda t: 90 <= t < 110) > 0.3        # 9 bands: uniform would be 0.11
    assert "valence" not in draws[0]                            # never given feedback: left to the model
    assert all(s in STYLES for s in (d["style"] for d in draws))    # nothing is ruled out entirely
    assert len({d["style"] for d in draws}) == len(STYLES)


def test_corrupt_newer_and_locked_databases_give_one_sentence(tmp_path):
    bad = tmp_path / "bad.sqlite3"
    bad.write_bytes(b"garbage" * 1000)
    with pytest.raises(PrefsError, match="cannot be used"):
        Preferences(bad)
    newer = tmp_path / "newer.sqlite3"
    db = sqlite3.connect(newer)
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.execute("INSERT INTO meta VALUES ('schema_version', '99')")
    db.commit()
    db.close()
    with pytest.raises(PrefsError, match="schema version 99"):
        Preferences(newer)
    ok = tmp_path / "ok.sqlite3"
    p = Preferences(ok, timeout=0.1)
    holder = sqlite3.connect(ok, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")                 # another process holds the write lock
    with pytest.raises(PrefsError, match="not saved"):
        p.record("ann", "like", {"style": "folk"})
    holder.execute("ROLLBACK")
    assert p.record("ann", "like", {"style": "folk"}) > 0      # works again once the lock is gone


def test_bad_listener_ids_are_refused(tmp_path):
    p = Preferences(tmp_path / "p.sqlite3")
    for bad in ("", "a b", "x" * 65, "../etc"):
        with pytest.raises(ValueError):
            p.record(bad, "like", {})


def test_what_the_likes_choose_is_what_the_preferences_list(tmp_path):
    """One taste for both: a like and a skip of the same music cancel out, so the likes
    choose nothing and the preferences list nothing (the stream once credited 'your likes'
    with a style drawn at random here); one like steers its controls to the liked regions."""
    p = Preferences(tmp_path / "p.sqlite3")
    heard = {"style": "fiddle", "valence": 0.7, "energy": 0.5, "tempo": 108}
    p.record("ann", "like", heard)
    p.record("ann", "skip", heard)
    got = p.learned("ann")
    assert got["steers"] == [] and got["more"] == got["less"] == [] and got["summary"] == "nothing yet"
    assert _draws(p, "ann", 50) == [{}] * 50
    p.record("bob", "like", heard)
    got = p.learned("bob")
    assert got["steers"] == ["style", "valence", "energy", "tempo"]
    assert got["more"] == ["moderate", "warm", "fiddle", "90-110 bpm"]
    draws = _draws(p, "bob", 2000)
    assert all(set(d) == set(got["steers"]) for d in draws)
    # the liked style and the liked tempo itself (not its band's middle)
    assert all(d["style"] == "fiddle" and d["tempo"] == 108 for d in draws[:4])
    assert sum(d["style"] == "fiddle" for d in draws) / len(draws) > 0.8          # every fifth choice explores
    assert {d["style"] for d in draws[4::5]} == set(STYLES) and all(30 <= d["tempo"] <= 240 for d in draws)


def test_an_older_schema_is_migrated_forward_in_both_backends(tmp_path):
    from cadenza.server import prefs_postgres, prefs_sqlite

    assert len(prefs_sqlite.MIGRATIONS) == len(prefs_postgres.MIGRATIONS) == SCHEMA_VERSION
    old = tmp_path / "old.sqlite3"          # version 0: the bookkeeping table and nothing else
    db = sqlite3.connect(old)
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.commit()
    db.close()
    p = Preferences(old)
    assert p.store.version() == SCHEMA_VERSION and p.record("ann", "like", {"style": "folk"}) > 0
    assert p.learned("ann")["more"] == ["folk"]
