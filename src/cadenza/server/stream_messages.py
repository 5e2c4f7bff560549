"""The messages a client sends on ``WS /api/stream``, as pydantic models: one per ``type``,
checked once at the edge (``parse_message``) into a record the session reads by name. Their
JSON schemas are served at ``GET /api/stream/messages`` (so they sit in the OpenAPI docs beside
the HTTP API) and listed in docs/server.md. Ranges (valence and energy 0..1, the tempo) are the
library's to check (``soundtrack.Controls``); here only the shape: the type of each field, and
no field the type does not have."""

from __future__ import annotations

import json
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from cadenza.music.soundtrack import CONTROL_FIELDS

TYPES = ("start", "control", "like", "skip", "playhead", "stop")


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ControlFields(_Message):
    style: str | None = None
    valence: float | None = None
    energy: float | None = None
    tempo: float | None = None
    key: str | None = None
    time_signature: str | None = None

    def changes(self) -> dict:
        """The controls the message names (a field given as null frees that control)."""
        return {k: (float(v) if isinstance(v, int) else v) for k, v in self.model_dump(exclude_unset=True).items()
                if k in CONTROL_FIELDS}


class Start(ControlFields):
    """Start the stream: any controls, and a seed for the same music again."""
    type: Literal["start"]
    seed: int | None = None


class Control(ControlFields):
    """Change controls from the next bar line at least half a second ahead."""
    type: Literal["control"]


class Playhead(_Message):
    """Where the client's playback is, in beats from the stream's start (every 0.25 s)."""
    type: Literal["playhead"]
    beat: float = Field(ge=0)


class Like(_Message):
    """Remember the controls heard now as liked (with ``?listener=ID``)."""
    type: Literal["like"]


class Skip(_Message):
    """Remember them as skipped, and start afresh at the next bar line."""
    type: Literal["skip"]


class Stop(_Message):
    """End the stream (close 1000)."""
    type: Literal["stop"]


ClientMessage = Annotated[Union[Start, Control, Playhead, Like, Skip, Stop], Field(discriminator="type")]
_ADAPTER = TypeAdapter(ClientMessage)

FIELD_WORDS = {"float_type": "a number", "int_type": "a whole number", "string_type": "text"}


def _sentence(err: dict) -> str:
    """One pydantic error as the sentence a client reads."""
    loc = [str(x) for x in err.get("loc", ())[1:]]
    field = loc[0] if loc else "message"
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        return f"unknown field {field!r}; controls are {', '.join(CONTROL_FIELDS)}"
    if field == "beat":
        return "playhead needs 'beat', a number of beats >= 0"
    if kind in FIELD_WORDS:
        return f"{field} must be {FIELD_WORDS[kind]}, not {json.dumps(err.get('input'), default=str)}"
    return f"{field}: {err.get('msg', 'invalid')}"


def parse_message(msg):
    """A decoded JSON message as its model; ``ValueError`` with one sentence when it is not one."""
    if not isinstance(msg, dict):
        raise ValueError("a message is a JSON object with a 'type'")
    if msg.get("type") not in TYPES:
        raise ValueError(f"unknown message type {msg.get('type')!r}; send one of {', '.join(TYPES)}")
    try:
        return _ADAPTER.validate_python(msg)
    except ValidationError as exc:
        raise ValueError(_sentence(exc.errors()[0])) from None


def schemas() -> dict:
    """Each client message type's JSON schema."""
    return {m.model_fields["type"].annotation.__args__[0]: m.model_json_schema()
            for m in (Start, Control, Playhead, Like, Skip, Stop)}
