"""What a preferences store is (``cadenza.server.prefs`` chooses one): the interface both
backends keep, the schema version they migrate to, and the error they raise."""

from __future__ import annotations

from typing import Protocol

from cadenza.errors import CadenzaError

SCHEMA_VERSION = 1      # the version both backends' MIGRATIONS reach


class PrefsError(CadenzaError):
    """The preferences database cannot be used."""


class PrefsStore(Protocol):
    """Where the likes and skips live: ``prefs_sqlite.SQLiteStore`` (a file, the default) or
    ``prefs_postgres.PostgresStore`` (one database that many server processes share). An
    event is ``(listener, kind, style, valence, energy, tempo, key, at)``; a failure raises
    ``PrefsError`` with one sentence. Each opens at ``SCHEMA_VERSION``, migrating an older
    schema forward and refusing a newer one."""

    where: str      # the file, or the URL without its password: what `cadenza serve` prints

    def add(self, event: tuple) -> int: ...                  # one event; its row id
    def rows(self, listener: str) -> list[tuple]: ...        # (kind, style, valence, energy, tempo), oldest first
    def events(self) -> list[tuple]: ...                     # every event, oldest first
    def count(self) -> int: ...
    def add_all(self, events) -> int: ...                    # all in one transaction, or none
    def close(self) -> None: ...
