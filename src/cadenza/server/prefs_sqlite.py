"""The preferences in one SQLite file (the default store of ``cadenza.server.prefs``).

WAL mode, so other processes may read while one writes. ``meta.schema_version`` names the
schema; ``MIGRATIONS[v]`` takes a file from version ``v`` to ``v + 1`` (a new file starts at
0), all the steps in one transaction. A file from a newer Cadenza is refused, not changed.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from cadenza.server.prefs_store import SCHEMA_VERSION, PrefsError

EVENT_COLUMNS = "listener, kind, style, valence, energy, tempo, key, at"
MIGRATIONS = [
    ("""CREATE TABLE IF NOT EXISTS events (
        id INTEGER PRIMARY KEY, listener TEXT NOT NULL, kind TEXT NOT NULL CHECK (kind IN ('like', 'skip')),
        style TEXT, valence REAL, energy REAL, tempo REAL, key TEXT, at REAL NOT NULL)""",
     "CREATE INDEX IF NOT EXISTS events_listener ON events (listener)"),
]


class SQLiteStore:
    def __init__(self, path: Path, timeout: float = 2.0):
        self.path = Path(path)
        self.where = str(self.path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(str(self.path), timeout=timeout, check_same_thread=False, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            self._migrate()
            self.db.execute("SELECT count(*) FROM events").fetchone()
        except sqlite3.Error as exc:
            raise PrefsError(f"the preferences database {self.path} cannot be used ({exc}); "
                             f"move it away or pass another --prefs file") from None
        except OSError as exc:
            raise PrefsError(f"the preferences database {self.path} cannot be opened ({exc.strerror or exc})") from None

    def version(self) -> int:
        row = self.db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return 0 if row is None else int(row[0])

    def _checked_version(self) -> int:
        v = self.version()
        if v > SCHEMA_VERSION:
            raise PrefsError(f"{self.path} has preferences schema version {v}, this Cadenza reads "
                             f"version {SCHEMA_VERSION}; move the file away to start afresh")
        return v

    def _migrate(self) -> None:
        if self._checked_version() == SCHEMA_VERSION:
            return
        self.db.execute("BEGIN IMMEDIATE")          # one writer migrates; another process waits, then sees it done
        try:
            v = self._checked_version()
            for step in MIGRATIONS[v:SCHEMA_VERSION]:
                for sql in step:
                    self.db.execute(sql)
            self.db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self.db.close()

    def _run(self, what: str, fn):
        try:
            with self._lock:
                return fn()
        except sqlite3.Error as exc:
            raise PrefsError(f"{what}the preferences database {self.path} failed ({exc})") from None

    def add(self, event: tuple) -> int:
        return self._run(f"the {event[1]} was not saved: ", lambda: int(self.db.execute(
            f"INSERT INTO events ({EVENT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?)", event).lastrowid))

    def rows(self, listener: str) -> list[tuple]:
        return self._run("", lambda: self.db.execute(
            "SELECT kind, style, valence, energy, tempo FROM events WHERE listener = ? ORDER BY id",
            (listener,)).fetchall())

    def events(self) -> list[tuple]:
        return self._run("", lambda: self.db.execute(f"SELECT {EVENT_COLUMNS} FROM events ORDER BY id").fetchall())

    def count(self) -> int:
        return self._run("", lambda: self.db.execute("SELECT count(*) FROM events").fetchone()[0])

    def add_all(self, events) -> int:
        def copy():
            self.db.execute("BEGIN IMMEDIATE")
            try:
                n = 0
                for n, event in enumerate(events, 1):
                    self.db.execute(f"INSERT INTO events ({EVENT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?)", event)
                self.db.execute("COMMIT")
                return n
            except BaseException:
                self.db.execute("ROLLBACK")
                raise

        return self._run("nothing was copied: ", copy)
