"""`cadenza prefs migrate SRC DST`: copy the listeners' likes and skips from one preferences
store to another (an SQLite file into PostgreSQL, when one server becomes many).

Each side is an SQLite file or a ``postgresql://`` URL (``cadenza.server.prefs``). The
source must exist; the destination is made (or migrated) to the current schema and must hold
no likes yet. The rows go over in one transaction: on any failure the destination keeps none
of them, and an SQLite file this command made is removed again.
"""

from __future__ import annotations

from pathlib import Path

from cadenza.errors import ConfigError


def _migrate(args) -> int:
    from cadenza.server.prefs import copy_events, is_postgres_url, open_store

    if not is_postgres_url(args.src) and not Path(args.src).is_file():
        raise ConfigError(f"the source {args.src} is not a preferences file: give an existing SQLite file "
                          f"(like prefs.sqlite3) or a postgresql:// URL")
    made = None if is_postgres_url(args.dst) or Path(args.dst).exists() else Path(args.dst)
    src = open_store(args.src)
    dst = None
    try:
        if not is_postgres_url(args.src) and not is_postgres_url(args.dst) \
                and Path(args.src).resolve() == Path(args.dst).resolve():
            raise ConfigError("the source and the destination are the same file")
        dst = open_store(args.dst)
        if src.where == dst.where:
            raise ConfigError("the source and the destination are the same database")
        n = copy_events(src, dst)
        listeners = len({e[0] for e in src.events()})
        print(f"copied {n} likes and skips of {listeners} listeners from {src.where} to {dst.where}")
        made = None
        return 0
    finally:
        src.close()
        if dst is not None:
            dst.close()
        if made is not None:
            for p in (made, Path(f"{made}-wal"), Path(f"{made}-shm")):
                p.unlink(missing_ok=True)


def register(sub) -> None:
    p = sub.add_parser("prefs", help="the listeners' likes and skips: copy them between databases",
                       description="Manage the preferences store of `cadenza serve` (an SQLite file or a "
                                   "PostgreSQL database).")
    ps = p.add_subparsers(dest="prefs_command", metavar="ACTION", required=True)
    m = ps.add_parser("migrate", help="copy every like and skip from SRC into the empty store DST",
                      description="Copy every like and skip from SRC into DST, in one transaction: DST gets all of "
                                  "them or none. Each is an SQLite file or a postgresql://USER:PASSWORD@HOST:PORT/DB "
                                  "URL; DST is created (or its schema migrated) and must hold no likes yet. Example: "
                                  "cadenza prefs migrate ~/.local/share/cadenza/prefs.sqlite3 "
                                  "postgresql://cadenza:secret@db.lan/cadenza")
    m.add_argument("src", metavar="SRC", help="the store to copy from (its likes stay)")
    m.add_argument("dst", metavar="DST", help="the store to copy into")
    m.set_defaults(func=_migrate)
