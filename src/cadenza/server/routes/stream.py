"""``WS /api/stream``: the endless soundtrack's socket. It checks the token, the listener id and
the stream limit, says ``ready`` (styles, moods, limits, bounds, the mood pad) and hands the
socket to ``cadenza.server.stream.StreamSession``."""

from __future__ import annotations

import json
import logging

from fastapi import APIRouter, WebSocket

from cadenza.server import schemas as S
from cadenza.server.errors import client_went_away
from cadenza.server.hub import HubDep
from cadenza.server.prefs import check_listener

router = APIRouter()
RETRY_STREAM_S = 10      # the Retry-After hint of a stream refused for want of room (close 1013)
log = logging.getLogger("cadenza.server")


def moods() -> dict:
    from cadenza.codecs.music import MOODS

    return MOODS


def mood_pad(codec) -> dict:
    """The mood pad as the stream reads it: levels per axis (a pad position x in 0..1 is level
    floor(x * levels)), the mood the status names for every cell (``grid[valence][energy]``,
    by ``soundtrack.mood_name``) and each named mood's own cell."""
    from cadenza.music.soundtrack import mood_name

    n = codec.config.levels
    return {"levels": n, "grid": [[mood_name((v, e)) for e in range(n)] for v in range(n)],
            "moods": {m: list(ve) for m, ve in moods().items()}}


def ready_message(hub) -> str:
    return json.dumps({"type": "ready", "styles": hub.mm.codec.offered_styles(), "moods": list(moods()),
                       "limits": hub.limits.to_dict(), "bounds": {"tempo": S.bound_of(S.ComposeRequest, "tempo")},
                       "pad": mood_pad(hub.mm.codec), "preferences": hub.preferences})


@router.get("/api/stream/messages", tags=["stream"])
async def stream_messages() -> dict:
    """The JSON schema of every message a client may send on ``WS /api/stream`` (by its
    ``type``); what the server sends back is listed in docs/server.md."""
    from cadenza.server.stream_messages import schemas

    return schemas()


@router.websocket("/api/stream")
async def stream(ws: WebSocket, hub: HubDep):
    from cadenza.server.stream import StreamSession

    await ws.accept()
    if not hub.carries_token(ws):
        await ws.close(4401, "this stream needs the server's access token: connect with ?token=TOKEN")
        return
    listener = ws.query_params.get("listener")
    if listener is not None:
        try:
            check_listener(listener)
        except ValueError as exc:
            await ws.close(4400, str(exc))
            return
    if hub.streams >= hub.limits.streams or hub.soundtracks.strained(hub.streams):
        why = "its limit" if hub.streams >= hub.limits.streams else "all it can carry now"
        await ws.close(1013, f"the server already plays {hub.streams} streams ({why}); Retry-After: "
                             f"{RETRY_STREAM_S}")
        return
    hub.streams += 1
    session = StreamSession(hub, ws, listener)
    code, reason = 1000, "done"
    try:
        await ws.send_text(ready_message(hub))
        code, reason = await session.run()
    except Exception as exc:   # the client went away mid-send, or a bug: never leave the slot taken
        if not client_went_away(exc):
            log.exception("stream failed")
            code, reason = 1011, "the stream failed on the server (see its log)"
    finally:
        hub.streams -= 1
    try:
        await ws.close(code, reason[:120])
    except Exception:
        pass
