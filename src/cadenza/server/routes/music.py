"""``/api/compose``, ``/api/continue``, ``/api/harmonize`` and ``/api/predict``: thin over
``cadenza.music``. Each converts the typed request (``schemas``) to the library's arguments,
runs the work on the shared worker pool (``Hub.generate``) and converts the answer."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from cadenza.server import schemas as S
from cadenza.server.convert import check_length, piece_response, score_of
from cadenza.server.errors import Refused
from cadenza.server.hub import Hub, HubDep

BINARY = {"schema": {"type": "string", "format": "binary"}}
PIECE_RESPONSES = {200: {"content": {"audio/midi": BINARY},
                         "description": 'the piece: JSON, or with "format": "midi" the MIDI file'}}

router = APIRouter(prefix="/api", tags=["music"])


def guarded(hub: Hub, req, make, strict: bool = True):
    """``make(guard)`` under the request's copy guard (as the CLI's --max-copy), recorded in
    the piece's settings; the guard is built in the worker."""
    from cadenza.music.authorship.originality import guard_for, guard_settings

    def run():
        guard = guard_for(hub.mm.path, req.max_copy, strict=strict, index=hub.guard_index)
        piece = make(guard)
        piece.settings.update(guard_settings(guard, req.max_copy))
        return piece
    return run


def answer(piece, name: str, req):
    """The piece as JSON, or as a MIDI download when the request asked ``"format": "midi"``."""
    body, data = piece_response(piece, name, req)
    if req.format == "midi":
        return Response(data, media_type="audio/midi",
                        headers={"Content-Disposition": f'attachment; filename="cadenza-{piece.kind}.mid"'})
    return body


@router.post("/compose", response_model=S.PieceResponse, responses=PIECE_RESPONSES)
async def compose(req: S.ComposeRequest, hub: HubDep):
    from cadenza.music.composition import compose as run

    check_length(req, hub.limits)
    piece = await hub.counted(guarded(hub, req, lambda guard: run(
        hub.mm, style=req.style, mood=req.mood, valence=req.valence, energy=req.energy, bars=req.bars,
        seconds=req.seconds, tempo=req.tempo, key=req.key, time_signature=req.time_signature, seed=req.seed,
        temperature=req.temperature, top_p=req.top_p, guard=guard)))
    return answer(piece, "/api/compose", req)


@router.post("/continue", response_model=S.PieceResponse, responses=PIECE_RESPONSES)
async def continue_(req: S.ContinueRequest, hub: HubDep):
    from cadenza.music.composition import continue_piece

    check_length(req, hub.limits)
    score = score_of(req, hub.limits)
    piece = await hub.counted(guarded(hub, req, lambda guard: continue_piece(
        hub.mm, score, bars=req.bars, seconds=req.seconds, style=req.style, seed=req.seed,
        temperature=req.temperature, top_p=req.top_p, mood=req.mood, valence=req.valence, energy=req.energy,
        guard=guard)))
    return answer(piece, "/api/continue", req)


@router.post("/harmonize", response_model=S.PieceResponse, responses=PIECE_RESPONSES)
async def harmonize(req: S.HarmonizeRequest, hub: HubDep):
    from cadenza.music.harmony import harmonize as run

    limits = hub.limits
    score = score_of(req, limits)
    bars_in = score.end() / max(1, score.ticks_per_quarter * 4)
    if bars_in > limits.bars:
        raise Refused(422, f"the melody is about {bars_in:.0f} bars; this server harmonizes at most {limits.bars}")
    piece = await hub.counted(guarded(hub, req, lambda guard: run(
        hub.mm, score, voices=req.voices, style=req.style, seed=req.seed, temperature=req.temperature,
        top_p=req.top_p, guard=guard), strict=False))
    return answer(piece, "/api/harmonize", req)


@router.post("/predict", response_model=S.PredictResponse)
async def predict(req: S.PredictRequest, hub: HubDep):
    from cadenza.music.predict import predict_next

    score = score_of(req, hub.limits)
    p = await hub.counted(lambda: predict_next(hub.mm, score, top=req.top))
    return {"notes": [{"pitch": n.pitch, "name": n.name, "probability": float(n.probability), "onset": n.onset,
                       "duration": n.duration} for n in p.notes],
            "p_end": float(p.p_end), "coverage": float(p.coverage), "last_note": p.last_note,
            "context_tokens": int(p.context_tokens)}
