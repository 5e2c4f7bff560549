"""``/api/listener/{listener}``: what the preferences learned of one listener."""

from __future__ import annotations

from fastapi import APIRouter

from cadenza.server import schemas as S
from cadenza.server.errors import Refused
from cadenza.server.hub import HubDep
from cadenza.server.prefs import PrefsError, check_listener

router = APIRouter(prefix="/api", tags=["listener"])


@router.get("/listener/{listener}", response_model=S.Listener)
async def listener_prefs(listener: str, hub: HubDep):
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
