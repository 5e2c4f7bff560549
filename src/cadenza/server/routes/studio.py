"""``/api/studio``: Cadenza Studio sessions over HTTP (thin over ``cadenza.music.studio``).

A session lives in the server process (``Hub.studio``, ``cadenza.server.studio_sessions``). It
expires after ``SESSION_IDLE_S`` without a request (then 404, "expired"). At most
``MAX_SESSIONS`` sessions are open (then 503). Routes get their session through the
``session_of`` dependency. Each
request that changes the piece says which notes it may change: ``play`` only adds notes,
``delete`` names its ids, and ``accept`` removes exactly the suggestion's ``replaces``.
Tests check that no other note changes.
"""

from __future__ import annotations

import base64
import secrets
import time
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, WebSocket
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from cadenza.bounds import INFILL_CANDIDATES, LIVE_TEMPO, STUDIO_BARS, VOICES
from cadenza.errors import CadenzaError
from cadenza.server.errors import Refused
from cadenza.server.hub import HubDep
from cadenza.server.schemas import PROBLEMS, Bound, Note, bound_of


class StudioOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tempo: float = Field(default=100, **LIVE_TEMPO.pydantic())
    time_signature: str = Field(default="4/4", pattern=r"^\d{1,2}/\d{1,2}$")
    key: str = Field(default="C", max_length=12)
    style: str | None = "folk"
    seed: int = Field(default=0, ge=0, le=2**62)


class PlayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    notes: list[Note] = Field(min_length=1, max_length=512)
    predict: bool = True


class DeleteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ids: list[int] = Field(min_length=1, max_length=4096)


class ConstraintsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scale: str | None = Field(default=None, max_length=12, description='a key whose scale the notes keep to: "C", "Am"')
    role: Literal["melody", "bass", "chords"] | None = None
    density: Literal["sparse", "medium", "dense"] | None = None


class SuggestRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["continue", "answer", "harmonize", "infill"]
    bars: int = Field(default=4, **STUDIO_BARS.pydantic())
    voices: int = Field(default=2, **VOICES.pydantic())
    from_bar: int | None = Field(default=None, ge=0, le=4096,
                                 description="infill, harmonize: first bar (from 0); "
                                             "harmonize without it: the whole piece")
    to_bar: int | None = Field(default=None, ge=1, le=4096, description="infill, harmonize: the bar after the last")
    k: int = Field(default=8, **INFILL_CANDIDATES.pydantic(), description="infill: candidates to choose from")
    keep: Literal["person", "all", "none"] = Field(
        default="person", description="infill: what stays in the bars: the person's notes (the model writes "
                                      "around them), every note (the model only adds), or none")
    seed: int | None = Field(default=None, ge=0, le=2**62)
    constraints: ConstraintsIn = Field(default_factory=ConstraintsIn)


class SettingsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(max_length=12, description='the key the model is given from now on: "C", "F#m"')


class SNoteOut(BaseModel):
    id: int
    pitch: int
    start: float
    duration: float
    velocity: int
    program: int
    by: Literal["person", "model"]


class Prediction(BaseModel):
    pitch: int
    name: str
    probability: float


class SuggestionOut(BaseModel):
    id: int
    kind: str
    notes: list[SNoteOut]
    replaces: list[int]
    region: list[float]
    request: dict
    elapsed_s: float
    info: dict


class SessionState(BaseModel):
    session: str
    notes: list[SNoteOut]
    suggestions: list[SuggestionOut]
    can_undo: bool
    can_redo: bool
    tempo: float
    time_signature: str
    key: str
    style: str | None
    bar_beats: float
    predictions: list[Prediction] | None = None
    elapsed_ms: float | None = None


def bounds() -> dict:
    """The studio page's number inputs and the request fields that bound them."""
    return {"tempo": bound_of(StudioOptions, "tempo"), "bars": bound_of(SuggestRequest, "bars"),
            "voices": bound_of(SuggestRequest, "voices"), "k": bound_of(SuggestRequest, "k")}


class Exported(BaseModel):
    midi_base64: str
    provenance: dict


router = APIRouter(prefix="/api/studio", tags=["studio"], responses=PROBLEMS)


def session_of(sid: str, hub: HubDep):
    """The path's studio session (404 when it expired or never existed); a dependency."""
    return hub.studio.get(sid)


Session = Annotated[object, Depends(session_of)]


def state(sid, s, predictions=None, elapsed=None) -> dict:
    out = {"session": sid, **s.state()}
    if predictions is not None:
        out["predictions"] = predictions
        out["elapsed_ms"] = elapsed
    return out


async def locked(hub, s, fn, generation: bool = False):
    """``fn()`` on the worker pool under the session's lock (counted as a generation when
    asked); a missing id is 404, a library error 422."""
    def run():
        with s.lock:
            return fn()

    try:
        return await (hub.counted(run) if generation else hub.run(run))
    except KeyError as exc:
        raise Refused(404, str(exc.args[0])) from None
    except CadenzaError as exc:
        raise Refused(422, " ".join(str(exc).split())) from None


def timed(fn):
    """``fn()`` and the milliseconds it took."""
    t = time.perf_counter()
    out = fn()
    return out, (time.perf_counter() - t) * 1000


@router.get("/bounds", response_model=dict[str, Bound])
async def input_bounds():
    """The bounds of the studio's numbers (tempo; bars, voices and k of a suggestion), read
    from the request schemas: the page gives its inputs these as min and max."""
    return bounds()


@router.post("/sessions", response_model=SessionState, status_code=201)
async def new_session(hub: HubDep, opts: StudioOptions = StudioOptions()):
    from cadenza.music.studio import StudioSession

    try:
        s = StudioSession(hub.mm, tempo=opts.tempo, time_signature=opts.time_signature, key=opts.key,
                          style=opts.style, seed=opts.seed)
    except CadenzaError as exc:
        raise Refused(422, " ".join(str(exc).split())) from None
    sid = secrets.token_urlsafe(12)
    hub.studio.add(sid, s)
    preds, ms = await locked(hub, s, lambda: timed(s.predictions))
    return state(sid, s, preds, ms)


@router.get("/sessions/{sid}", response_model=SessionState)
async def get_session(sid: str, s: Session):
    return state(sid, s)


@router.patch("/sessions/{sid}", response_model=SessionState)
async def settings(sid: str, req: SettingsRequest, s: Session, hub: HubDep):
    """Change the session's key (the Key selector): predictions and suggestions from now on
    are conditioned on it; the notes stay; open suggestions go stale."""
    def run():
        s.set_key(req.key)
        return timed(s.predictions)

    preds, ms = await locked(hub, s, run)
    return state(sid, s, preds, ms)


@router.post("/sessions/{sid}/notes", response_model=SessionState)
async def play(sid: str, req: PlayRequest, s: Session, hub: HubDep):
    def run():
        s.play([n.model_dump() for n in req.notes])
        return timed(s.predictions) if req.predict else (None, None)

    preds, ms = await locked(hub, s, run)
    return state(sid, s, preds, ms)


@router.post("/sessions/{sid}/delete", response_model=SessionState)
async def delete(sid: str, req: DeleteRequest, s: Session, hub: HubDep):
    await locked(hub, s, lambda: s.delete(req.ids))
    return state(sid, s)


@router.get("/sessions/{sid}/predictions", response_model=list[Prediction])
async def predictions(s: Session, hub: HubDep):
    return await locked(hub, s, s.predictions)


@router.post("/sessions/{sid}/suggest", response_model=SuggestionOut)
async def suggest(req: SuggestRequest, s: Session, hub: HubDep):
    from cadenza.music.constraints import Constraints

    try:
        c = Constraints(**req.constraints.model_dump())
    except CadenzaError as exc:
        raise Refused(422, " ".join(str(exc).split())) from None
    sg = await locked(hub, s, lambda: s.suggest(req.kind, bars=req.bars, voices=req.voices, from_bar=req.from_bar,
                                                to_bar=req.to_bar, constraints=c, k=req.k, seed=req.seed,
                                                keep=req.keep), generation=True)
    return sg.to_dict()


@router.post("/sessions/{sid}/suggestions/{gid}/{action}", response_model=SessionState)
async def act(sid: str, gid: int, action: Literal["accept", "reject", "regenerate"], s: Session, hub: HubDep):
    if action == "regenerate":
        await locked(hub, s, lambda: s.regenerate(gid), generation=True)
    else:
        await locked(hub, s, lambda: s.accept(gid) if action == "accept" else s.reject(gid))
    return state(sid, s)


@router.post("/sessions/{sid}/{action}", response_model=SessionState)
async def history(sid: str, action: Literal["undo", "redo"], s: Session, hub: HubDep):
    done = await locked(hub, s, s.undo if action == "undo" else s.redo)
    if not done:
        raise Refused(409, f"nothing to {action}")
    return state(sid, s)


def wav_of(data: bytes) -> bytes:
    """A MIDI file rendered to WAV bytes (the SoundFont synthesizer)."""
    import tempfile
    from pathlib import Path

    from cadenza.codecs.audio import write_wav
    from cadenza.codecs.music import score_from_bytes
    from cadenza.render import SAMPLE_RATE, synthesize

    audio = synthesize(score_from_bytes(data))
    with tempfile.TemporaryDirectory() as d:
        return write_wav(Path(d) / "studio.wav", audio, SAMPLE_RATE).read_bytes()


@router.get("/sessions/{sid}/export", response_model=Exported, responses={
    200: {"content": {"audio/midi": {"schema": {"type": "string", "format": "binary"}},
                      "audio/wav": {"schema": {"type": "string", "format": "binary"}}},
          "description": "the piece: JSON (MIDI in base 64 + provenance), the MIDI file or a WAV render"}})
async def export(s: Session, hub: HubDep, format: Literal["json", "midi", "wav"] = "json"):
    if not s.notes:
        raise Refused(409, "the piece has no notes yet; nothing to export")
    data, record = await locked(hub, s, s.export)
    if format == "midi":
        return Response(data, media_type="audio/midi",
                        headers={"Content-Disposition": 'attachment; filename="cadenza-studio.mid"'})
    if format == "wav":
        wav = await hub.run(wav_of, data)
        return Response(wav, media_type="audio/wav",
                        headers={"Content-Disposition": 'attachment; filename="cadenza-studio.wav"'})
    return {"midi_base64": base64.b64encode(data).decode("ascii"), "provenance": dict(record)}


@router.websocket("/sessions/{sid}/live")
async def live(ws: WebSocket, sid: str, hub: HubDep):
    """Play along (the protocol: ``cadenza.server.studio_live``)."""
    from cadenza.server.studio_live import play_along

    await play_along(ws, hub, sid)
