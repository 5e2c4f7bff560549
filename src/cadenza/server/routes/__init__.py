"""The server's routes by resource, each module one ``APIRouter``:

- ``pages``: /, /listen, /studio, /docs, /redoc and /static (the vendored files);
- ``system``: /api/health, /api/models, /api/soundfont;
- ``music``: /api/compose, /api/continue, /api/harmonize, /api/predict;
- ``listener``: /api/listener/{id};
- ``studio``: /api/studio/... (sessions, suggestions, play along's socket);
- ``stream``: WS /api/stream.

Routes reach what they share (model, limits, pool, preferences) through the ``hub_of``
dependency (``cadenza.server.hub``), not through closures.
"""

from __future__ import annotations

from fastapi import FastAPI


def include_routes(app: FastAPI) -> None:
    from cadenza.server.routes import listener, music, pages, stream, studio, system

    pages.add_pages(app)
    for r in (system.router, music.router, listener.router, studio.router, stream.router):
        app.include_router(r)
