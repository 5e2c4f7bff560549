"""The FastAPI application behind ``cadenza serve`` (one process: sessions live in it).

Routes stay thin over ``cadenza.music``: each converts the typed request (``schemas``) to
the library's arguments, runs the work on the shared worker pool, and converts the answer.
Failures a caller can cause come back as 4xx with one sentence in ``detail``: 400 (a Host
the server does not answer to), 403 (a POST or DELETE from another site's page), 401 (token),
413 (body size), 422 (bad values, bad MIDI, too many notes, too long), 503 (busy, with
Retry-After). The stream is ``WS /api/stream`` (``cadenza.server.stream``). The Host and
Origin checks (``cadenza.server.access``) run before everything else.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import hmac
import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fastapi import FastAPI, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response

from cadenza._version import __version__
from cadenza.errors import CadenzaError
from cadenza.server import schemas as S
from cadenza.server.access import Access, AccessGuard
from cadenza.server.errors import Refused
from cadenza.server.limits import Limits
from cadenza.server.prefs import Preferences, PrefsError, check_listener

BINARY = {"schema": {"type": "string", "format": "binary"}}
PIECE_RESPONSES = {200: {"content": {"audio/midi": BINARY},
                         "description": 'the piece: JSON, or with "format": "midi" the MIDI file'}}
TOKEN_COOKIE = "cadenza_token"
RETRY_STREAM_S = 10      # the Retry-After hint of a stream refused for want of room (close 1013)
log = logging.getLogger("cadenza.server")


class Hub:
    """What the routes share: the model, the limits, the worker pool, the preferences."""

    def __init__(self, mm, limits: Limits, prefs_path=None, preferences: bool = True):
        self.mm, self.limits = mm, limits
        self.pool = self.decoder = None
        self.open()
        self.streams = 0
        self.generations = 0
        self._lock = threading.Lock()
        self.prefs: Preferences | None = None
        self.prefs_problem = "off: --no-preferences" if not preferences else None
        if preferences:
            try:
                self.prefs = Preferences(prefs_path)
            except PrefsError as exc:
                self.prefs_problem = f"off: {exc}"
                log.warning("preferences are off: %s", exc)

    async def run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    @property
    def preferences(self) -> str:
        return "on" if self.prefs is not None else self.prefs_problem

    def chooser(self, listener):
        if self.prefs is None or listener is None:
            return None
        return self.prefs.chooser(listener, self.mm.codec.offered_styles())

    def remember(self, listener, kind: str, controls: dict) -> dict:
        if listener is None:
            return {"saved": False, "reason": "no listener id: connect with ?listener=ID to keep likes and skips"}
        if self.prefs is None:
            return {"saved": False, "reason": f"preferences are {self.prefs_problem}"}
        try:
            return {"saved": True, "id": self.prefs.record(listener, kind, controls)}
        except PrefsError as exc:
            return {"saved": False, "reason": str(exc)}

    def start_generation(self) -> None:
        with self._lock:
            if self.generations >= self.limits.generations:
                raise Refused(503, f"the server is busy with {self.generations} generations (its limit); try again "
                                   f"in a moment", {"Retry-After": "1"})
            self.generations += 1

    def end_generation(self) -> None:
        with self._lock:
            self.generations -= 1

    def open(self) -> None:
        """The worker pool (again, after ``close``: an ASGI host may run the app's lifespan more than once)."""
        if self.pool is None:
            self.pool = ThreadPoolExecutor(max_workers=self.limits.workers, thread_name_prefix="cadenza-gen")
        if self.decoder is None:      # every stream's bars, in one batch (server.batcher)
            from cadenza.server.batcher import StreamDecoder

            self.decoder = StreamDecoder(self.mm.network)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = None
        if self.decoder is not None:
            self.decoder.close()
            self.decoder = None


# --------------------------------------------------------------------------- conversions
def score_of(req: S.MusicInput, limits: Limits):
    """The request's piece as a symusic score (ticks), checked against the limits."""
    from cadenza.codecs.music import score_from_bytes

    if (req.notes is None) == (req.midi_base64 is None):
        raise Refused(422, "give the piece as either notes or midi_base64 (one of the two)")
    if req.midi_base64 is not None:
        try:
            data = base64.b64decode(req.midi_base64, validate=True)
        except (binascii.Error, ValueError):
            raise Refused(422, "midi_base64 is not valid base 64") from None
        score = score_from_bytes(data, name="midi_base64")
        if score.note_num() > limits.notes:
            raise Refused(422, f"the MIDI file has {score.note_num():,} notes; the limit is {limits.notes:,}")
        return score
    if not req.notes:
        raise Refused(422, "notes is empty; give at least one note")
    if len(req.notes) > limits.notes:
        raise Refused(422, f"{len(req.notes):,} notes; the limit is {limits.notes:,} per request")
    num, den = (int(x) for x in req.time_signature.split("/"))
    if not 1 <= num <= 32 or den not in (1, 2, 4, 8, 16, 32):
        raise Refused(422, f"time_signature {req.time_signature} is not a metre (like 4/4, 3/4 or 6/8)")
    from cadenza.codecs.music import score_of_notes

    return score_of_notes(req.notes, req.tempo, (num, den))


def piece_response(piece, request_name: str, req) -> tuple[dict, bytes]:
    from cadenza.music.output import midi_bytes, stamped_score

    command = f"POST {request_name} " + json.dumps(req.model_dump(exclude={"midi_base64"}, exclude_none=True),
                                                  sort_keys=True)
    score, prov = stamped_score(piece, command=command[:2000])
    data = midi_bytes(score)
    tpq = score.ticks_per_quarter
    person = {piece.kept_label or "input"} if piece.kept is not None else set()
    notes = []
    for v, t in enumerate(score.tracks):
        for n in t.notes:
            notes.append({"pitch": int(n.pitch), "start": n.time / tpq, "duration": n.duration / tpq,
                          "velocity": int(n.velocity), "program": -1 if t.is_drum else int(t.program), "voice": v,
                          "by": "person" if t.name in person else "model"})
    notes.sort(key=lambda n: (n["start"], n["pitch"]))
    cond = piece.conditioning
    body = {"kind": piece.kind, "notes": notes, "tempo": float(piece.tempo),
            "time_signature": cond.get("time_signature"), "key": cond.get("key"), "style": cond.get("style"),
            "bars": int(piece.bars), "seconds": float(score.to("second").end()) if score.note_num() else 0.0,
            "seed": int(piece.seed), "generated_tokens": int(piece.generated_tokens),
            "elapsed_s": float(piece.elapsed_s), "credit": prov["credit"],
            "midi_base64": base64.b64encode(data).decode("ascii"),
            "provenance": {k: v for k, v in prov.items() if k != "notes"}}
    return body, data


def _check_length(req, limits: Limits) -> None:
    if req.bars is not None and req.bars > limits.bars:
        raise Refused(422, f"bars is {req.bars}; this server makes at most {limits.bars} bars per request")
    if req.seconds is not None and req.seconds > limits.seconds:
        raise Refused(422, f"seconds is {req.seconds:g}; this server makes at most {limits.seconds:g} s per request")


# --------------------------------------------------------------------------- the app
def create_app(model_dir=None, token: str | None = None, limits: Limits | None = None, prefs_path=None,
               preferences: bool = True, mm=None, access: Access | None = None) -> FastAPI:
    """The application. ``token``: every request must carry it (``Authorization: Bearer``,
    ``?token=`` or the cookie a page visit with ``?token=`` sets); None: no token asked.
    ``mm``: an already loaded ``MusicModel`` (else ``model_dir`` or the default is loaded).
    ``access``: the Host names answered and the Origins allowed (default: a loopback
    server's, ``Access()``; ``cadenza serve`` builds it from --host, --allow-host and
    --allow-origin)."""
    from cadenza.music.load import load_model

    limits = limits or Limits()
    if mm is None:
        mm = load_model(model_dir)
    hub = Hub(mm, limits, prefs_path=prefs_path, preferences=preferences)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        hub.open()
        yield
        hub.close()

    app = FastAPI(title="Cadenza", version=__version__, lifespan=lifespan, responses=S.PROBLEMS,
                  docs_url=None, redoc_url=None,   # served from vendored files by cadenza.server.pages
                  description="Compose, continue, harmonize and predict music, and stream an endless "
                              "soundtrack that follows the listener (WS /api/stream; see docs/server.md).")
    app.state.hub = hub

    def token_ok(value) -> bool:
        return token is None or (isinstance(value, str) and hmac.compare_digest(value.encode(), token.encode()))

    def request_token(headers, query, cookies):
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip()
        return query.get("token") or cookies.get(TOKEN_COOKIE)

    @app.middleware("http")
    async def guard(request: Request, call_next):
        if token is not None and not token_ok(request_token(request.headers, request.query_params, request.cookies)):
            return JSONResponse({"detail": "this server needs its access token: add ?token=TOKEN to the address "
                                           "or the header 'Authorization: Bearer TOKEN'"}, status_code=401)
        size = request.headers.get("content-length")
        if size is not None and (not size.isdigit() or int(size) > limits.request_bytes):
            return JSONResponse({"detail": f"the request body is over {limits.request_bytes:,} bytes"},
                                status_code=413)
        response = await call_next(request)
        if token is not None and request.query_params.get("token") and request.method == "GET":
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
        return response

    app.add_middleware(AccessGuard, access=access or Access())     # added last: runs first, before any route

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

    async def generate(fn):
        hub.start_generation()
        try:
            return await hub.run(fn)
        finally:
            hub.end_generation()

    @functools.cache
    def guard_index():
        """The model's corpus index, found and loaded once (the first generation that asks)."""
        from cadenza.music.authorship.originality import model_index

        return model_index(mm.path)

    def guarded(req, make, strict: bool = True):
        """``make(guard)`` under the request's copy guard (as the CLI's --max-copy), recorded in
        the piece's settings; the guard is built in the worker."""
        from cadenza.music.authorship.originality import guard_for, guard_settings

        def run():
            guard = guard_for(mm.path, req.max_copy, strict=strict, index=guard_index())
            piece = make(guard)
            piece.settings.update(guard_settings(guard, req.max_copy))
            return piece
        return run

    def answer(piece, name, req):
        body, data = piece_response(piece, name, req)
        if req.format == "midi":
            return Response(data, media_type="audio/midi",
                            headers={"Content-Disposition": f'attachment; filename="cadenza-{piece.kind}.mid"'})
        return body

    # ---- pages --------------------------------------------------------------------------
    from cadenza.server.pages import add_pages

    add_pages(app)

    # ---- API ----------------------------------------------------------------------------
    @app.get("/api/health", response_model=S.Health)
    async def health():
        return {"status": "ok", "version": __version__, "model": mm.name, "streams": hub.streams,
                "generations": hub.generations, "preferences": hub.preferences, "limits": limits.to_dict()}

    @app.get("/api/models", response_model=list[S.ModelOut])
    async def models():
        from cadenza.music.registry import list_models

        infos = await asyncio.to_thread(list_models)
        loaded = Path(mm.path).resolve() if getattr(mm, "path", None) else None
        return [{"name": i.name, "path": str(i.path), "default": i.is_default,
                 "loaded": loaded is not None and Path(i.path).resolve() == loaded, "info": i.to_dict()}
                for i in infos]

    @app.get("/api/soundfont", include_in_schema=False)
    async def soundfont():
        from cadenza.render import check_soundfont

        try:
            return FileResponse(check_soundfont(), media_type="application/octet-stream")
        except CadenzaError as exc:
            raise Refused(404, str(exc)) from None

    @app.post("/api/compose", response_model=S.PieceResponse, responses=PIECE_RESPONSES)
    async def compose(req: S.ComposeRequest):
        from cadenza.music.generate import compose as run

        _check_length(req, limits)
        piece = await generate(guarded(req, lambda guard: run(
            mm, style=req.style, mood=req.mood, valence=req.valence, energy=req.energy, bars=req.bars,
            seconds=req.seconds, tempo=req.tempo, key=req.key, time_signature=req.time_signature, seed=req.seed,
            temperature=req.temperature, top_p=req.top_p, guard=guard)))
        return answer(piece, "/api/compose", req)

    @app.post("/api/continue", response_model=S.PieceResponse, responses=PIECE_RESPONSES)
    async def continue_(req: S.ContinueRequest):
        from cadenza.music.generate import continue_piece

        _check_length(req, limits)
        score = score_of(req, limits)
        piece = await generate(guarded(req, lambda guard: continue_piece(
            mm, score, bars=req.bars, seconds=req.seconds, style=req.style, seed=req.seed,
            temperature=req.temperature, top_p=req.top_p, mood=req.mood, valence=req.valence, energy=req.energy,
            guard=guard)))
        return answer(piece, "/api/continue", req)

    @app.post("/api/harmonize", response_model=S.PieceResponse, responses=PIECE_RESPONSES)
    async def harmonize(req: S.HarmonizeRequest):
        from cadenza.music.harmony import harmonize as run

        score = score_of(req, limits)
        bars_in = score.end() / max(1, score.ticks_per_quarter * 4)
        if bars_in > limits.bars:
            raise Refused(422, f"the melody is about {bars_in:.0f} bars; this server harmonizes at most {limits.bars}")
        piece = await generate(guarded(req, lambda guard: run(
            mm, score, voices=req.voices, style=req.style, seed=req.seed, temperature=req.temperature,
            top_p=req.top_p, guard=guard), strict=False))
        return answer(piece, "/api/harmonize", req)

    @app.post("/api/predict", response_model=S.PredictResponse)
    async def predict(req: S.PredictRequest):
        from cadenza.music.predict import predict_next

        score = score_of(req, limits)
        p = await generate(lambda: predict_next(mm, score, top=req.top))
        return {"notes": [{"pitch": n.pitch, "name": n.name, "probability": float(n.probability), "onset": n.onset,
                           "duration": n.duration} for n in p.notes],
                "p_end": float(p.p_end), "coverage": float(p.coverage), "last_note": p.last_note,
                "context_tokens": int(p.context_tokens)}

    @app.get("/api/listener/{listener}", response_model=S.Listener)
    async def listener_prefs(listener: str):
        try:
            check_listener(listener)
        except ValueError as exc:
            raise Refused(422, str(exc)) from None
        if hub.prefs is None:
            raise Refused(503, f"preferences are {hub.prefs_problem}")
        try:
            return hub.prefs.learned(listener)
        except PrefsError as exc:
            raise Refused(503, str(exc)) from None

    from cadenza.server.studio import router as studio_router

    hub.socket_allowed = lambda ws: token_ok(request_token(ws.headers, ws.query_params, ws.cookies))

    app.include_router(studio_router(hub))

    @app.websocket("/api/stream")
    async def stream(ws: WebSocket):
        from cadenza.server.stream import StreamSession

        await ws.accept()
        q = ws.query_params
        if token is not None and not token_ok(request_token(ws.headers, q, ws.cookies)):
            await ws.close(4401, "this stream needs the server's access token: connect with ?token=TOKEN")
            return
        listener = q.get("listener")
        if listener is not None:
            try:
                check_listener(listener)
            except ValueError as exc:
                await ws.close(4400, str(exc))
                return
        if hub.streams >= limits.streams or hub.decoder.strained(hub.streams):
            why = "its limit" if hub.streams >= limits.streams else "all it can carry now"
            await ws.close(1013, f"the server already plays {hub.streams} streams ({why}); Retry-After: "
                                 f"{RETRY_STREAM_S}")
            return
        hub.streams += 1
        session = StreamSession(hub, ws, listener)
        code, reason = 1000, "done"
        try:
            await ws.send_text(json.dumps({"type": "ready", "styles": mm.codec.offered_styles(),
                                           "moods": list(_moods()), "limits": limits.to_dict(),
                                           "bounds": {"tempo": S.bound_of(S.ComposeRequest, "tempo")},
                                           "pad": _mood_pad(mm.codec),
                                           "preferences": hub.preferences}))
            code, reason = await session.run()
        except Exception as exc:   # the client went away mid-send, or a bug: never leave the slot taken
            if type(exc).__name__ not in ("WebSocketDisconnect", "ClientDisconnected", "ConnectionClosed",
                                          "ConnectionClosedOK", "ConnectionClosedError"):
                log.exception("stream failed")
                code, reason = 1011, "the stream failed on the server (see its log)"
        finally:
            hub.streams -= 1
        try:
            await ws.close(code, reason[:120])
        except Exception:
            pass

    return app


def _moods():
    from cadenza.codecs.music import MOODS

    return MOODS


def _mood_pad(codec) -> dict:
    """The mood pad as the stream reads it: levels per axis (a pad position x in 0..1 is level
    floor(x * levels)), the mood the status names for every cell (``grid[valence][energy]``,
    by ``soundtrack.mood_name``) and each named mood's own cell."""
    from cadenza.music.soundtrack import mood_name

    n = codec.config.levels
    return {"levels": n, "grid": [[mood_name((v, e)) for e in range(n)] for v in range(n)],
            "moods": {m: list(ve) for m, ve in _moods().items()}}
