"""What a listener steers an endless soundtrack with (``Controls``), their check against a
model's codec, and the mood names the stream reports (``mood_name``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from cadenza.bounds import LIVE_TEMPO
from cadenza.codecs.music import MOODS
from cadenza.errors import ConfigError

CONTROL_FIELDS = ("style", "valence", "energy", "tempo", "key", "time_signature")
PREFIX_FIELDS = ("style", "key", "tempo", "time_signature")


@dataclass(frozen=True)
class Controls:
    """What the listener asked for; None leaves a control to the preferences or the model.
    ``valence`` and ``energy`` are 0..1 (a position among the corpus's segments, see
    ``MusicCodec.control_level``); ``tempo`` in quarter notes per minute; ``key`` like "D" or
    "F#m"; ``time_signature`` like "3/4"."""

    style: str | None = None
    valence: float | None = None
    energy: float | None = None
    tempo: float | None = None
    key: str | None = None
    time_signature: str | None = None

    def changed(self, **changes) -> "Controls":
        """A copy with ``changes`` applied (a None value frees that control again)."""
        unknown = set(changes) - set(CONTROL_FIELDS)
        if unknown:
            raise ConfigError(f"unknown control {sorted(unknown)[0]!r}; controls are {', '.join(CONTROL_FIELDS)}")
        return replace(self, **changes)

    def to_dict(self) -> dict:
        return asdict(self)


def check_controls(codec, c: Controls) -> Controls:
    """Controls validated against the codec (one-sentence ConfigErrors)."""
    if c.style is not None:
        offered = codec.offered_styles()
        if c.style not in offered:
            raise ConfigError(f"unknown style {c.style!r}; this model offers {', '.join(offered)}")
    for name in ("valence", "energy"):
        v = getattr(c, name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= float(v) <= 1):
            raise ConfigError(f"{name} must be a number from 0 to 1, not {v!r}")
    if c.tempo is not None and (isinstance(c.tempo, bool) or not isinstance(c.tempo, (int, float))
                                or not LIVE_TEMPO.lo <= float(c.tempo) <= LIVE_TEMPO.hi):
        raise ConfigError(f"tempo must be a number of beats per minute from {LIVE_TEMPO.lo} to {LIVE_TEMPO.hi}, "
                          f"not {c.tempo!r}")
    codec.conditioning(key=c.key, time_signature=c.time_signature)   # raises on a bad key or metre
    return c


def mood_name(levels: tuple) -> str:
    """The named mood nearest to (valence level, energy level)."""
    v, e = levels
    return min(MOODS, key=lambda m: (MOODS[m][0] - v) ** 2 + (MOODS[m][1] - e) ** 2)
