"""The studio sessions a server process keeps: at most ``MAX_SESSIONS``, each forgotten after
``SESSION_IDLE_S`` without a request (then 404, "expired")."""

from __future__ import annotations

import time

from cadenza.server.errors import Refused

SESSION_IDLE_S = 1800.0
MAX_SESSIONS = 32


class StudioSessions:
    """Session id -> ``cadenza.music.studio.StudioSession`` (each with ``touched``, its last request)."""

    def __init__(self):
        self.items: dict[str, object] = {}

    def expire(self) -> None:
        now = time.monotonic()
        for sid in [s for s, v in self.items.items() if now - v.touched > SESSION_IDLE_S]:
            del self.items[sid]

    def add(self, sid: str, session) -> None:
        self.expire()
        if len(self.items) >= MAX_SESSIONS:
            raise Refused(503, f"{MAX_SESSIONS} studio sessions are open (the limit); try again later",
                          {"Retry-After": "60"})
        self.items[sid] = session

    def get(self, sid: str):
        self.expire()
        s = self.items.get(sid)
        if s is None:
            raise Refused(404, f"no studio session {sid[:40]!r}: it expired after {SESSION_IDLE_S / 60:.0f} minutes "
                               f"without a request, or never existed; start a new one (POST /api/studio/sessions)")
        s.touched = time.monotonic()
        return s
