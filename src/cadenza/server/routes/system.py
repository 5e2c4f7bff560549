"""``/api/health``, ``/api/models`` and ``/api/soundfont``: what the server runs and serves."""

from __future__ import annotations

import asyncio
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from cadenza._version import __version__
from cadenza.errors import CadenzaError
from cadenza.server import schemas as S
from cadenza.server.errors import Refused
from cadenza.server.hub import HubDep

router = APIRouter(prefix="/api", tags=["server"])


@router.get("/health", response_model=S.Health)
async def health(hub: HubDep):
    return {"status": "ok", "version": __version__, "model": hub.mm.name, "streams": hub.streams,
            "stream_processes": hub.stream_processes, "generations": hub.generations, "preferences": hub.preferences, "limits": hub.limits.to_dict()}


@router.get("/models", response_model=list[S.ModelOut])
async def models(hub: HubDep):
    from cadenza.music.registry import list_models

    infos = await asyncio.to_thread(list_models)
    loaded = Path(hub.mm.path).resolve() if getattr(hub.mm, "path", None) else None
    return [{"name": i.name, "path": str(i.path), "default": i.is_default,
             "loaded": loaded is not None and Path(i.path).resolve() == loaded, "info": i.to_dict()}
            for i in infos]


@router.get("/soundfont", include_in_schema=False)
async def soundfont():
    from cadenza.render import check_soundfont

    try:
        return FileResponse(check_soundfont(), media_type="application/octet-stream")
    except CadenzaError as exc:
        raise Refused(404, str(exc)) from None
