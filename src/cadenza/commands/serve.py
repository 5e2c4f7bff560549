"""`cadenza serve`: the web server (HTTP API, endless soundtrack stream, listening page).

Thin over ``cadenza.server.app.create_app``; uvicorn runs it in this process (stream sessions
live in it) and the streams' soundtracks are made in processes of their own, one per core
(``server.stream_engine``). Loopback by default; any other address needs an access token. The
configuration is read here: the options and their environment variables.
"""

from __future__ import annotations

import os
import re

from cadenza.errors import ConfigError
from cadenza.server.access import Access, is_loopback
from cadenza.server.limits import STREAMS_CARRIED

TOKEN_ENV = "CADENZA_TOKEN"
STREAM_PROCESSES = min(8, os.cpu_count() or 1)
HOSTS_ENV = "CADENZA_ALLOWED_HOSTS"
ORIGINS_ENV = "CADENZA_ALLOWED_ORIGINS"


def _listed(given, env: str) -> list[str]:
    """The values of a repeatable option, then those in ``$env`` (separated by commas or spaces)."""
    return list(given or ()) + [v for v in re.split(r"[,\s]+", os.environ.get(env, "")) if v]


def _serve(args) -> int:
    import socket

    token = args.token or os.environ.get(TOKEN_ENV) or None
    if token is not None and len(token) < 8:
        raise ConfigError("the access token must be at least 8 characters long")
    if not is_loopback(args.host) and token is None:
        raise ConfigError(f"serving on {args.host} (not loopback) needs an access token: pass --token TOKEN or set "
                          f"{TOKEN_ENV}; every request and stream must then carry it")
    access = Access.serving(args.host, _listed(args.allow_host, HOSTS_ENV), _listed(args.allow_origin, ORIGINS_ENV))
    if not 0 < args.port < 65536:
        raise ConfigError(f"--port must be from 1 to 65535, not {args.port}")
    with socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET) as s:   # a clear error, early
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((args.host, args.port))
        except OSError as exc:
            raise ConfigError(f"cannot listen on {args.host}:{args.port} ({exc.strerror or exc}); "
                              f"choose another --port or --host") from None
    import torch
    import uvicorn

    from cadenza.server.app import create_app
    from cadenza.server.limits import Limits

    torch.set_num_threads(1)     # each worker thread runs one generation; two threads each would fight
    limits = Limits(streams=args.max_streams, workers=args.workers)
    app = create_app(args.model, token=token, limits=limits, prefs_path=args.prefs,
                     preferences=not args.no_preferences, access=access, stream_processes=args.stream_processes)
    hub = app.state.hub
    shown = f"http://{'[' + args.host + ']' if ':' in args.host else args.host}:{args.port}"
    q = "/?token=" + token if token is not None and is_loopback(args.host) else "/"
    print(f"Cadenza {hub.mm.version} at {shown}{q}   (listen: {shown}/listen, API: {shown}/docs)")
    print(f"preferences: {hub.preferences}" + (f" ({hub.prefs.where})" if hub.prefs is not None else ""))
    for line in limits.lines():
        print(f"limits: {line}")
    n = args.stream_processes
    print(f"streams: made in {n} process{'es' if n != 1 else ''} of their own" if n else
          "streams: made in a thread of this process")
    for line in access.lines():
        print(line)
    if token is not None:
        print("access token required on every request (?token=, cookie, or 'Authorization: Bearer')")
    # no per-message deflate: the messages are small JSON, and compressing each costs the event loop more
    # than the bytes it saves (about 2% of the server's time at 220 listeners, the clients' too)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, ws_max_size=limits.message_bytes,
                ws_per_message_deflate=False)
    return 0


def register(sub) -> None:
    p = sub.add_parser("serve", help="run the web server: HTTP API, endless soundtrack, listening page",
                       description="Serve the music model over HTTP on this machine: POST /api/compose, "
                                   "/api/continue, /api/harmonize, /api/predict, an endless soundtrack that follows "
                                   "the listener's mood and likes on WS /api/stream, and the listening page at "
                                   "/listen. Loopback by default; another --host needs --token (or $CADENZA_TOKEN). "
                                   "Only pages from the server itself may open streams or send POST/DELETE, and on "
                                   "loopback only requests addressed to 127.0.0.1, localhost or [::1] are answered "
                                   "(against other sites' pages and DNS rebinding): --allow-origin and --allow-host "
                                   "add more. API reference at /docs once it runs.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--model", default=None, help="music model folder (default: the shipped model)")
    p.add_argument("--token", default=None, help=f"access token every request must carry (or ${TOKEN_ENV}); "
                                                 "required off loopback")
    p.add_argument("--allow-host", action="append", metavar="NAME",
                   help=f"also answer requests addressed to NAME (a host name without port, like studio.lan; "
                        f"*.example.org for its subdomains; * for any); repeatable, or ${HOSTS_ENV} (comma-separated). "
                        f"On loopback only 127.0.0.1, localhost and [::1] are answered without it; elsewhere any "
                        f"name is, unless it is given")
    p.add_argument("--allow-origin", action="append", metavar="ORIGIN",
                   help=f"also let web pages at ORIGIN (scheme://host[:port], like http://localhost:3000; * for any) "
                        f"open streams and send POST/DELETE, to embed the stream in your own app or game; "
                        f"repeatable, or ${ORIGINS_ENV} (comma-separated). Pages from the server itself always may")
    p.add_argument("--prefs", default=None, help="listener preferences: an SQLite file (default: prefs.sqlite3 in "
                                                 "the user data folder) or a postgresql://USER:PASSWORD@HOST:PORT/DB "
                                                 "URL that several server processes share")
    p.add_argument("--no-preferences", action="store_true", help="do not keep likes and skips")
    p.add_argument("--max-streams", type=int, default=STREAMS_CARRIED,
                   help=f"open soundtrack streams at most (default {STREAMS_CARRIED}: what a 2-core machine carried "
                        "in benchmarks/stream.py --find; new streams are also refused while the decoder is strained)")
    p.add_argument("--stream-processes", type=int, default=STREAM_PROCESSES,
                   help=f"processes that make the streams' soundtracks (default {STREAM_PROCESSES}: one per core, "
                        f"each batching its streams; a new stream goes to the one with the fewest); 0 makes them in "
                        f"a thread of the server's own process")
    p.add_argument("--workers", type=int, default=2, help="generation threads (default 2, one per core)")
    p.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"],
                   help="server log level (default warning)")
    p.set_defaults(func=_check_and_serve)


def _check_and_serve(args) -> int:
    if not 1 <= args.max_streams <= 4096:
        raise ConfigError(f"--max-streams must be from 1 to 4096, not {args.max_streams}")
    if not 0 <= args.stream_processes <= 64:
        raise ConfigError(f"--stream-processes must be from 0 to 64, not {args.stream_processes}")
    if not 1 <= args.workers <= 32:
        raise ConfigError(f"--workers must be from 1 to 32, not {args.workers}")
    from cadenza.server.prefs import check_where

    check_where(args.prefs)
    return _serve(args)
