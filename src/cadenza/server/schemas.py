"""Typed request and response models of the HTTP API (pydantic; they make the OpenAPI at /docs).

Notes travel as JSON objects in quarter-note beats; a request may instead carry a whole MIDI
file as ``midi_base64``. Answers carry the notes (with who wrote each) and, with
``"format": "midi"``, are the MIDI file itself (``audio/midi``, with Cadenza's credit line).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from cadenza.bounds import LIVE_TEMPO, PREDICT_TOP, SEED, TEMPERATURE, TOP_P, VOICES

Beat = Field(ge=0, le=100_000, description="quarter-note beats from the start")
TEMPO_MIN, TEMPO_MAX = LIVE_TEMPO.lo, LIVE_TEMPO.hi   # every tempo the API and the pages take (cadenza.bounds)


class Note(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pitch: int = Field(ge=0, le=127, description="MIDI pitch (60 = middle C)")
    start: float = Beat
    duration: float = Field(gt=0, le=64, description="quarter-note beats")
    velocity: int = Field(default=80, ge=1, le=127)
    program: int = Field(default=0, ge=0, le=127, description="General MIDI instrument (0 = piano)")


class NoteOut(BaseModel):
    pitch: int
    start: float
    duration: float
    velocity: int
    program: int
    voice: int = Field(description="track of the answer the note is on")
    by: Literal["person", "model"] = Field(description="who wrote the note")


class MusicInput(BaseModel):
    """A piece given as notes (with tempo and metre) or as a MIDI file in base 64."""

    model_config = ConfigDict(extra="forbid")

    notes: list[Note] | None = Field(default=None, description="the piece's notes (or give midi_base64)")
    midi_base64: str | None = Field(default=None, description="a MIDI file, base 64 (or give notes)")
    tempo: float = Field(default=120, **LIVE_TEMPO.pydantic(), description="quarter notes per minute, for notes")
    time_signature: str = Field(default="4/4", pattern=r"^\d{1,2}/\d{1,2}$")


class Sampling(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seed: int | None = Field(default=None, **SEED.pydantic())
    temperature: float = Field(default=1.0, **TEMPERATURE.pydantic())
    top_p: float | None = Field(default=0.95, **TOP_P.pydantic())
    format: Literal["json", "midi"] = Field(default="json", description="json: notes + MIDI in base 64; midi: the file")


class CopyLimit(BaseModel):
    max_copy: int | None = Field(default=None, ge=0, le=10_000, description=(
        "never repeat more than N consecutive notes (pitch intervals) of a training piece, as the CLI's "
        "--max-copy: default 16 where the model has a corpus index, else off; 0: off"))


class Length(BaseModel):
    bars: int | None = Field(default=None, ge=1, le=10_000, description="new bars (or seconds)")
    seconds: float | None = Field(default=None, gt=0, le=100_000)


class ComposeRequest(Sampling, Length, CopyLimit):
    style: str | None = None
    mood: str | None = Field(default=None, description="calm, happy, sad, tense or energetic")
    valence: float | None = Field(default=None, ge=0, le=1)
    energy: float | None = Field(default=None, ge=0, le=1)
    tempo: float | None = Field(default=None, **LIVE_TEMPO.pydantic())
    key: str | None = Field(default=None, max_length=12, description='"C", "F#m", "Bb minor"')
    time_signature: str | None = Field(default=None, pattern=r"^\d{1,2}/\d{1,2}$")


class ContinueRequest(MusicInput, Sampling, Length, CopyLimit):
    style: str | None = None
    mood: str | None = None
    valence: float | None = Field(default=None, ge=0, le=1)
    energy: float | None = Field(default=None, ge=0, le=1)


class HarmonizeRequest(MusicInput, Sampling, CopyLimit):
    voices: int = Field(default=3, **VOICES.pydantic())
    style: str | None = "bach"


class PredictRequest(MusicInput):
    top: int = Field(default=5, **PREDICT_TOP.pydantic())


class PieceResponse(BaseModel):
    kind: str
    notes: list[NoteOut]
    tempo: float
    time_signature: str | None
    key: str | None
    style: str | None
    bars: int
    seconds: float
    seed: int
    generated_tokens: int
    elapsed_s: float
    credit: dict = Field(description="notes by person and by model, and the human share in percent")
    midi_base64: str = Field(description="the MIDI file, with Cadenza's credit line")
    provenance: dict


class NextNoteOut(BaseModel):
    pitch: int
    name: str
    probability: float
    onset: str
    duration: str


class PredictResponse(BaseModel):
    notes: list[NextNoteOut]
    p_end: float
    coverage: float
    last_note: str
    context_tokens: int


class Health(BaseModel):
    status: Literal["ok"]
    version: str
    model: str
    streams: int
    stream_processes: int = Field(description="processes that make the streams' soundtracks (0: a thread of this one)")
    generations: int
    preferences: str = Field(description='"on" or "off: <why>"')
    limits: dict


class ModelOut(BaseModel):
    name: str
    path: str
    default: bool
    loaded: bool
    info: dict


class Listener(BaseModel):
    listener: str
    likes: int
    skips: int
    more: list[str]
    less: list[str]
    summary: str
    steers: list[str] = Field(description="the controls the likes choose where the listener leaves them free")
    scores: dict


class Bound(BaseModel):
    min: float
    max: float
    integer: bool = Field(description="whole numbers only")


def bound_of(model: type[BaseModel], name: str) -> dict:
    """A field's inclusive bounds (its ``ge`` and ``le``) as the schema declares them: what the
    pages give their number boxes, so a page and the server never disagree on a limit."""
    field = model.model_fields[name]
    lo = next(m.ge for m in field.metadata if hasattr(m, "ge"))
    hi = next(m.le for m in field.metadata if hasattr(m, "le"))
    kinds = getattr(field.annotation, "__args__", None) or (field.annotation,)
    return {"min": lo, "max": hi, "integer": int in kinds}


class Problem(BaseModel):
    """Every 4xx answer: one sentence, and for invalid fields the validator's list too."""

    detail: str
    errors: list | None = None


PROBLEMS = {code: {"model": Problem, "description": what} for code, what in (
    (400, "addressed to a host name this server does not answer to (see --allow-host)"),
    (401, "the access token is missing or wrong"),
    (403, "sent by a web page from another origin (see --allow-origin)"), (404, "no such thing (or it expired)"),
    (409, "not possible in the current state"), (413, "the request body is too big"),
    (422, "bad values, bad MIDI, or over a limit"), (503, "busy or unavailable: try again later"))}
