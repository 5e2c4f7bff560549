"""The shared preference store in a real PostgreSQL (pg_fixtures starts one; no mock): the
same answers as SQLite, a versioned schema, `cadenza prefs migrate` (all or nothing), and two
`cadenza serve` processes sharing one database, where a like sent to one changes what the
other chooses for that listener."""

import json
import random
import sqlite3
import threading

import pytest

from conftest import require
from pg_fixtures import pg_url, postgres_cluster  # noqa: F401  (fixtures)

psycopg = require("psycopg", "pip install 'psycopg[binary]' psycopg_pool (the server's dependencies)")
require("psycopg_pool")

from cadenza.cli import main  # noqa: E402
from cadenza.server.prefs import SCHEMA_VERSION, Preferences, PrefsError  # noqa: E402

STYLES = ["bach", "renaissance", "medieval", "folk", "fiddle"]
FEEDBACK = [("ann", "like", {"style": "folk", "valence": 0.9, "energy": 0.1, "tempo": 96, "key": "D"}),
            ("ann", "skip", {"style": "bach", "valence": 0.2, "energy": 0.9, "tempo": 150}),
            ("ann", "like", {"style": "folk", "energy": 0.3, "tempo": 101.5}),
            ("bob", "skip", {"style": "folk"})]


def _fill(p: Preferences) -> None:
    for listener, kind, controls in FEEDBACK:
        assert p.record(listener, kind, controls) > 0


def _draws(p: Preferences, listener: str, n: int = 300) -> list:
    choose, rng = p.chooser(listener, STYLES), random.Random(3)
    return [choose(rng, None) for _ in range(n)]


def test_postgres_answers_as_sqlite_and_keeps_its_schema_version(pg_url, tmp_path):
    pg, lite = Preferences(pg_url), Preferences(tmp_path / "p.sqlite3")
    _fill(pg)
    _fill(lite)
    assert pg.where == pg_url and pg.store.version() == SCHEMA_VERSION
    for who in ("ann", "bob", "nobody"):
        assert pg.learned(who) == lite.learned(who)
    assert {"calm", "folk"} <= set(pg.learned("ann")["more"]) and pg.learned("ann")["likes"] == 2
    assert _draws(pg, "ann") == _draws(lite, "ann")            # the same choices, draw for draw
    pg.close()
    again = Preferences(pg_url)                                 # another process, later: nothing lost
    assert again.learned("ann") == lite.learned("ann")
    with pytest.raises(ValueError):
        again.record("no spaces", "like", {})
    with psycopg.connect(pg_url) as c:
        assert c.execute("SELECT value FROM cadenza.meta WHERE key = 'schema_version'").fetchone()[0] == \
            str(SCHEMA_VERSION)
        assert c.execute("SELECT count(*) FROM cadenza.events").fetchone()[0] == len(FEEDBACK)
        c.execute("UPDATE cadenza.meta SET value = '99' WHERE key = 'schema_version'")
    again.close()
    with pytest.raises(PrefsError, match="schema version 99"):      # a newer Cadenza's database is not touched
        Preferences(pg_url)


def test_processes_starting_together_migrate_once(pg_url):
    opened, errors = [], []

    def open_one():
        try:
            opened.append(Preferences(pg_url))
        except Exception as exc:        # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(opened) == 4
    opened[0].record("ann", "like", {"style": "folk"})
    assert all(p.learned("ann")["likes"] == 1 for p in opened)
    for p in opened:
        p.close()


def test_dropped_connections_cost_no_like(pg_url):
    """The database closes every connection (a restart, a failover): the next like is saved."""
    p = Preferences(pg_url)
    p.record("ann", "like", {"style": "folk"})
    with psycopg.connect(pg_url, autocommit=True) as c:
        ended = c.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                          "WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchone()[0]
    assert ended >= 1
    assert p.record("ann", "like", {"style": "folk"}) > 0 and p.learned("ann")["likes"] == 2
    p.close()


def test_unreachable_and_malformed_urls_give_one_sentence_without_the_password():
    with pytest.raises(PrefsError, match="cannot be used") as e:
        Preferences("postgresql://cadenza:s3cret@127.0.0.1:1/prefs", timeout=1)
    assert "s3cret" not in str(e.value) and "cadenza:***@127.0.0.1:1" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(PrefsError, match="not a PostgreSQL URL"):
        Preferences("postgresql://127.0.0.1/x?nosuch=1")
    with pytest.raises(PrefsError, match='cannot be used .*invalid integer value "notaport"'):
        Preferences("postgresql://127.0.0.1:notaport/x")
    with pytest.raises(PrefsError, match="SQLite file or a postgresql:// URL"):
        Preferences("mysql://127.0.0.1/x")


def test_migrate_copies_sqlite_into_postgres_once(pg_url, tmp_path, capsys):
    src = tmp_path / "old.sqlite3"
    lite = Preferences(src)
    _fill(lite)
    assert main(["prefs", "migrate", str(src), pg_url]) == 0
    assert f"copied {len(FEEDBACK)} likes and skips of 2 listeners" in capsys.readouterr().out
    pg = Preferences(pg_url)
    assert pg.learned("ann") == lite.learned("ann") and pg.learned("bob") == lite.learned("bob")
    assert _draws(pg, "ann") == _draws(lite, "ann")
    assert main(["prefs", "migrate", str(src), pg_url]) == 2          # a second copy would count them twice
    err = capsys.readouterr().err
    assert "already holds 4 likes and skips" in err and err.count("\n") == 1
    assert pg.store.count() == len(FEEDBACK)
    back = tmp_path / "back.sqlite3"                                   # and out again, into a new file
    assert main(["prefs", "migrate", pg_url, str(back)]) == 0
    assert Preferences(back).learned("ann") == lite.learned("ann")


def test_migrate_is_all_or_nothing_and_bad_arguments_exit_2(pg_url, tmp_path, capsys):
    src = tmp_path / "old.sqlite3"
    _fill(Preferences(src))
    db = sqlite3.connect(src)          # SQLite keeps text in a REAL column; PostgreSQL refuses it at the last row
    db.execute("INSERT INTO events (listener, kind, tempo, at) VALUES ('cy', 'like', 'fast', 0)")
    db.commit()
    db.close()
    assert main(["prefs", "migrate", str(src), pg_url]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cadenza: error: nothing was copied") and err.count("\n") == 1
    with psycopg.connect(pg_url) as c:
        assert c.execute("SELECT count(*) FROM cadenza.events").fetchone()[0] == 0    # not the first four either
    made = tmp_path / "new.sqlite3"
    for args, says in ((["missing.sqlite3", str(made)], "is not a preferences file"),
                       ([str(src), "postgresql://127.0.0.1:1/x"], "cannot be used"),
                       ([str(src), "mysql://db/x"], "SQLite file or a postgresql:// URL"),
                       ([str(src), str(src)], "the same file"),
                       ([pg_url, pg_url], "the same database")):
        assert main(["prefs", "migrate", *args]) == 2, args
        err = capsys.readouterr().err
        assert says in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert not made.exists()


def test_a_like_sent_to_one_server_changes_the_choices_of_another(pg_url):
    """Two real `cadenza serve` processes on one PostgreSQL: before the like, the second
    server's stream for ann leaves the style to the model; after a like of folk sent to the
    first, the second's next stream for ann plays folk, chosen by her preferences."""
    websockets = require("websockets.sync.client")
    from serve_processes import first_segment, serving, until

    with serving(2, pg_url) as (one, two):
        ws_url = lambda base: base.replace("http://", "ws://") + "/api/stream?listener=ann"  # noqa: E731
        with websockets.connect(ws_url(two)) as ws:
            json.loads(ws.recv(timeout=20))
            ws.send(json.dumps({"type": "start", "seed": 5}))
            assert first_segment(ws)["chosen_by"]["style"] == "model"
        with websockets.connect(ws_url(one)) as ws:
            json.loads(ws.recv(timeout=20))
            ws.send(json.dumps({"type": "start", "style": "folk", "energy": 0.1, "tempo": 100, "seed": 5}))
            until(ws, "notes")
            ws.send(json.dumps({"type": "like"}))
            assert until(ws, "liked")["saved"] is True
        with websockets.connect(ws_url(two)) as ws:
            json.loads(ws.recv(timeout=20))
            ws.send(json.dumps({"type": "start", "seed": 5}))
            seg = first_segment(ws)
        assert seg["chosen_by"]["style"] == "preferences" and seg["controls"]["style"] == "folk"
        assert seg["chosen_by"]["energy"] == "preferences" and seg["controls"]["energy_level"] == 0
