"""``Refused``: a request the server will not do, answered as a 4xx/5xx with one sentence.

Its own module so the routers (``server/routes/``) and the sockets share it without importing
each other; ``app.create_app`` installs the handler that turns it into a JSON answer.
"""

from __future__ import annotations


class Refused(Exception):
    """A request the server will not do: answered with ``status`` and one sentence."""

    def __init__(self, status: int, detail: str, headers: dict | None = None):
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers


GONE = ("WebSocketDisconnect", "ClientDisconnected", "ConnectionClosed", "ConnectionClosedOK", "ConnectionClosedError")


def client_went_away(exc: BaseException) -> bool:
    """Whether a socket's failure is only its client leaving (by the exception's class name:
    Starlette's, uvicorn's and websockets' each have their own)."""
    return type(exc).__name__ in GONE
