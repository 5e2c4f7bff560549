"""``cadenza serve``: the HTTP API, the endless soundtrack stream and the web pages.

- ``app``: ``create_app(...)``, the FastAPI application (routes stay thin over ``cadenza.music``).
- ``access``: which requests are answered: the Host check (400) and the Origin check (403,
  close 4403) against other sites' pages, before any route.
- ``limits``: what one request, generation or stream may cost, with the 4xx each breach gives.
- ``schemas``: the typed (pydantic) request and response models.
- ``soundtrack``: the stream sessions (``WS /api/stream``), scheduled over a small worker pool.
- ``prefs``: listener likes and skips, and the controls they make likelier; stored in SQLite
  (``prefs_sqlite``) or in PostgreSQL shared by many processes (``prefs_postgres``).
- ``static/``: the pages (``/``, ``/listen``) and the vendored browser synthesizer.
"""
