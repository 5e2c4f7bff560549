"""The FastAPI application behind ``cadenza serve`` (one process: sessions live in it).

``create_app`` builds the ``Hub`` (what the routes share), the checks every request passes
and the error answers; the routes live in ``cadenza.server.routes`` by resource (music,
studio, stream, listener, system, pages) and reach the hub through the ``hub_of`` dependency.
Failures a caller can cause come back as 4xx with one sentence in ``detail``: 400 (a Host
the server does not answer to), 403 (a POST or DELETE from another site's page), 401 (token),
413 (body size), 422 (bad values, bad MIDI, too many notes, too long), 503 (busy, with
Retry-After). The stream is ``WS /api/stream`` (``cadenza.server.stream``). The Host and
Origin checks (``cadenza.server.access``) run before everything else.
"""

from __future__ import annotations

import contextlib
import json

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from cadenza._version import __version__
from cadenza.errors import CadenzaError
from cadenza.server import schemas as S
from cadenza.server.access import Access, AccessGuard
from cadenza.server.errors import Refused
from cadenza.server.hub import TOKEN_COOKIE, Hub
from cadenza.server.limits import Limits


def create_app(model_dir=None, token: str | None = None, limits: Limits | None = None, prefs_path=None,
               preferences: bool = True, mm=None, access: Access | None = None,
               stream_processes: int = 0) -> FastAPI:
    """The application. ``token``: every request must carry it (``Authorization: Bearer``,
    ``?token=`` or the cookie a page visit with ``?token=`` sets); None: no token asked.
    ``mm``: an already loaded ``MusicModel`` (else ``model_dir`` or the default is loaded).
    ``access``: the Host names answered and the Origins allowed (default: a loopback
    server's, ``Access()``; ``cadenza serve`` builds it from --host, --allow-host and
    --allow-origin). ``stream_processes``: how many processes of their own make the streams'
    soundtracks (``server.stream_engine``; ``cadenza serve`` starts one per core); 0: a thread
    of this one."""
    from cadenza.music.load import load_model
    from cadenza.server.routes import include_routes

    limits = limits or Limits()
    if mm is None:
        mm = load_model(model_dir)
    hub = Hub(mm, limits, prefs_path=prefs_path, preferences=preferences, token=token, stream_processes=stream_processes)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        hub.open()
        yield
        hub.close()

    app = FastAPI(title="Cadenza", version=__version__, lifespan=lifespan, responses=S.PROBLEMS,
                  docs_url=None, redoc_url=None,   # served from vendored files by cadenza.server.routes.pages
                  description="Compose, continue, harmonize and predict music, and stream an endless "
                              "soundtrack that follows the listener (WS /api/stream; see docs/server.md).")
    app.state.hub = hub
    add_checks(app, hub, access or Access())
    add_error_answers(app)
    include_routes(app)
    return app


def add_checks(app: FastAPI, hub: Hub, access: Access) -> None:
    """The token and body-size checks on every HTTP request, then (added last, so run first)
    the Host and Origin checks."""
    limits = hub.limits

    @app.middleware("http")
    async def guard(request: Request, call_next):
        if not hub.carries_token(request):
            return JSONResponse({"detail": "this server needs its access token: add ?token=TOKEN to the address "
                                           "or the header 'Authorization: Bearer TOKEN'"}, status_code=401)
        size = request.headers.get("content-length")
        if size is not None and (not size.isdigit() or int(size) > limits.request_bytes):
            return JSONResponse({"detail": f"the request body is over {limits.request_bytes:,} bytes"},
                                status_code=413)
        response = await call_next(request)
        if hub.token is not None and request.query_params.get("token") and request.method == "GET":
            response.set_cookie(TOKEN_COOKIE, hub.token, httponly=True, samesite="strict")
        return response

    app.add_middleware(AccessGuard, access=access)


def add_error_answers(app: FastAPI) -> None:
    """``Refused`` as its status, a library error as 422, a validation error as 422 with the
    first problem in one sentence (all as ``{"detail": ...}``)."""
    @app.exception_handler(Refused)
    async def refused(request, exc: Refused):
        return JSONResponse({"detail": exc.detail}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(CadenzaError)
    async def cadenza_error(request, exc: CadenzaError):
        return JSONResponse({"detail": " ".join(str(exc).split())}, status_code=422)

    @app.exception_handler(RequestValidationError)
    async def invalid(request, exc: RequestValidationError):
        errors = exc.errors()
        first = errors[0] if errors else {}
        where = ".".join(str(x) for x in first.get("loc", ()) if x != "body")
        return JSONResponse({"detail": f"{where or 'request'}: {first.get('msg', 'invalid')}",
                             "errors": json.loads(json.dumps(errors, default=str))}, status_code=422)
