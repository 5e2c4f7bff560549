"""``Hub``: what the routes share (the model, the limits, the worker pool, the preferences,
the access token), and ``hub_of``, the FastAPI dependency that hands it to a route."""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from cadenza.server.errors import Refused
from cadenza.server.limits import Limits
from cadenza.server.prefs import Preferences, PrefsError
from cadenza.server.studio_sessions import StudioSessions

TOKEN_COOKIE = "cadenza_token"
log = logging.getLogger("cadenza.server")


class Hub:
    """What the routes share. ``token``: every request must carry it (None: no token asked)."""

    def __init__(self, mm, limits: Limits, prefs_path=None, preferences: bool = True, token: str | None = None,
                 stream_processes: int = 0):
        self.mm, self.limits, self.token = mm, limits, token
        self.prefs_path, self.stream_processes = prefs_path, stream_processes
        self.pool = self.soundtracks = None
        self.streams = 0
        self.generations = 0
        self.studio = StudioSessions()
        self._lock = threading.Lock()
        self.prefs: Preferences | None = None
        self.prefs_problem = "off: --no-preferences" if not preferences else None
        if preferences:
            try:
                self.prefs = Preferences(prefs_path)
            except PrefsError as exc:
                self.prefs_problem = f"off: {exc}"
                log.warning("preferences are off: %s", exc)
        self.open()

    # ---- the access token ---------------------------------------------------------------
    def token_ok(self, value) -> bool:
        return self.token is None or (isinstance(value, str)
                                      and hmac.compare_digest(value.encode(), self.token.encode()))

    @staticmethod
    def token_of(conn: HTTPConnection):
        """The token a request or socket carries: the Bearer header, ?token= or the cookie."""
        auth = conn.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip()
        return conn.query_params.get("token") or conn.cookies.get(TOKEN_COOKIE)

    def carries_token(self, conn: HTTPConnection) -> bool:
        return self.token_ok(self.token_of(conn))

    # ---- work ---------------------------------------------------------------------------
    async def run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    async def counted(self, fn):
        """``fn`` on the worker pool, counted against the generation limit (503 past it)."""
        self.start_generation()
        try:
            return await self.run(fn)
        finally:
            self.end_generation()

    def start_generation(self) -> None:
        with self._lock:
            if self.generations >= self.limits.generations:
                raise Refused(503, f"the server is busy with {self.generations} generations (its limit); try again "
                                   f"in a moment", {"Retry-After": "1"})
            self.generations += 1

    def end_generation(self) -> None:
        with self._lock:
            self.generations -= 1

    @functools.cached_property
    def guard_index(self):
        """The model's corpus index, found and loaded once (the first generation that asks)."""
        from cadenza.music.authorship.originality import model_index

        return model_index(self.mm.path)

    # ---- preferences --------------------------------------------------------------------
    @property
    def preferences(self) -> str:
        return "on" if self.prefs is not None else self.prefs_problem

    def remember(self, listener, kind: str, controls: dict) -> dict:
        if listener is None:
            return {"saved": False, "reason": "no listener id: connect with ?listener=ID to keep likes and skips"}
        if self.prefs is None:
            return {"saved": False, "reason": f"preferences are {self.prefs_problem}"}
        try:
            return {"saved": True, "id": self.prefs.record(listener, kind, controls)}
        except PrefsError as exc:
            return {"saved": False, "reason": str(exc)}

    # ---- lifetime -----------------------------------------------------------------------
    def open(self) -> None:
        """The worker pool (again, after ``close``: an ASGI host may run the app's lifespan more than once)."""
        if self.pool is None:
            self.pool = ThreadPoolExecutor(max_workers=self.limits.workers, thread_name_prefix="cadenza-gen")
        if self.soundtracks is None:   # every stream's bars, in one batch (server.batcher)
            if self.stream_processes:   # in processes of their own (server.stream_engine)
                from cadenza.server.stream_engine import EnginePool

                self.soundtracks = EnginePool(self.stream_processes, self.mm.path, self.prefs_path,
                                              preferences=self.prefs is not None)
            else:
                from cadenza.server.streams import LocalStreams

                self.soundtracks = LocalStreams(self.mm, self.prefs)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = None
        if self.soundtracks is not None:
            self.soundtracks.close()
            self.soundtracks = None


def hub_of(conn: HTTPConnection) -> Hub:
    """The app's ``Hub`` (a FastAPI dependency for routes and sockets)."""
    return conn.app.state.hub


HubDep = Annotated[Hub, Depends(hub_of)]
