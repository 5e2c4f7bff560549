"""Conversions at the server's edge: a request's piece in (``score_of``, ``check_length``) and a
generated piece out (``piece_response``), as the music routes and the studio share them."""

from __future__ import annotations

import base64
import binascii
import json

from cadenza.server import schemas as S
from cadenza.server.errors import Refused
from cadenza.server.limits import Limits


def score_of(req: S.MusicInput, limits: Limits):
    """The request's piece as a symusic score (ticks), checked against the limits."""
    from cadenza.codecs.music import score_from_bytes, score_of_notes

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
    return score_of_notes(req.notes, req.tempo, (num, den))


def check_length(req, limits: Limits) -> None:
    """A compose/continue request's bars and seconds against this server's limits."""
    if req.bars is not None and req.bars > limits.bars:
        raise Refused(422, f"bars is {req.bars}; this server makes at most {limits.bars} bars per request")
    if req.seconds is not None and req.seconds > limits.seconds:
        raise Refused(422, f"seconds is {req.seconds:g}; this server makes at most {limits.seconds:g} s per request")


def piece_response(piece, request_name: str, req) -> tuple[dict, bytes]:
    """A generated piece as the API's JSON body (``PieceResponse``) and its stamped MIDI file."""
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
