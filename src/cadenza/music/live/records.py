"""The live engine's records: what goes in (a player's note-on / note-off), what comes out
(accompaniment note-on / note-off events on the beat grid), and the settings of a session
with their bounds (one table, ``BOUNDS``, read by the engine, the CLI's help and the server).

Times are seconds on the engine's clock (any monotonic clock; the caller's). Beats count
from the grid's origin (beat 0: the first downbeat), in the metre's beats.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from cadenza.errors import ConfigError

ROLES = ("chords", "bass", "counter", "answer")
DENSITIES = ("sparse", "medium", "dense")

# Every user-facing bound of a live session: (min, max, whole number?).
BOUNDS = {
    "tempo": (40.0, 240.0, False),        # beats per minute (the targets: 60-180)
    "count_in": (0, 8, True),             # beats of count-in before the first downbeat
    "lead_ms": (20.0, 250.0, False),      # how long before its beat a beat's decision is final
    "follow_after": (4, 32, True),        # beats heard before the tempo is followed
    "velocity": (1, 127, True),
}


def check_bound(name: str, value):
    """``value`` if it lies within ``BOUNDS[name]`` (ConfigError with one sentence otherwise)."""
    lo, hi, whole = BOUNDS[name]
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and lo <= value <= hi
    if ok and whole and int(value) != value:
        ok = False
    if not ok:
        kind = "a whole number" if whole else "a number"
        raise ConfigError(f"{name.replace('_', ' ')} must be {kind} from {lo:g} to {hi:g}, not {value!r}")
    return int(value) if whole else float(value)


@dataclass(frozen=True)
class NoteOn:
    """A key pressed by the player: ``time`` in seconds on the engine's clock."""

    time: float
    pitch: int
    velocity: int = 80


@dataclass(frozen=True)
class NoteOff:
    """A key released by the player."""

    time: float
    pitch: int


@dataclass(frozen=True)
class OutEvent:
    """One accompaniment event, scheduled on the beat grid.

    ``time``: when to send it (seconds, engine clock); ``beat``: where on the grid; ``on``: a
    note-on (``velocity`` > 0) or a note-off; ``decided``: the clock time when the engine made
    it final (``lead`` = time - decided, never negative: an event that could not be made final
    before its time is not sent at all); ``correction``: the beat's notes were changed because
    the player went somewhere the sounding accompaniment did not fit.
    """

    time: float
    beat: float
    pitch: int
    velocity: int
    on: bool
    role: str
    decided: float
    correction: bool = False

    @property
    def lead(self) -> float:
        return self.time - self.decided

    def to_dict(self) -> dict:
        d = asdict(self)
        d["lead"] = self.lead
        return d


@dataclass(frozen=True)
class Decision:
    """How long the engine took to decide a beat, and what started it (for the benchmark)."""

    beat: int
    cause: str             # "note_on", "note_off" or "beat" (prepared right after the previous beat)
    elapsed_s: float
    at: float              # clock time when the decision was ready


@dataclass(frozen=True)
class TakeNote:
    """A note of a take, in beats from the origin, with who played it ("person" or "model")."""

    pitch: int
    start: float
    duration: float
    velocity: int
    by: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class LiveSettings:
    """A session's settings, checked (ConfigError with one sentence)."""

    role: str = "chords"
    tempo: float = 100.0                 # the starting (or fixed) tempo, beats per minute
    time_signature: str = "4/4"
    key: str | None = None               # the key the harmony is in (None: found from the notes)
    scale: str | None = None             # scale lock: accompaniment pitches only from this key's scale
    density: str | None = None           # sparse / medium / dense (None: medium)
    follow: bool = True                  # follow the player's tempo once ``follow_after`` beats are heard
    follow_after: int = 4
    count_in: int = 0                    # beats; 0: the first note-on is the first downbeat
    lead_ms: float = 80.0
    style: str = "folk"
    seed: int = 0
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        from cadenza.codecs.music import parse_key

        if self.role not in ROLES:
            raise ConfigError(f"unknown role {self.role!r}; choose one of {', '.join(ROLES)}")
        if self.density is not None and self.density not in DENSITIES:
            raise ConfigError(f"unknown density {self.density!r}; choose one of {', '.join(DENSITIES)}")
        self.tempo = check_bound("tempo", self.tempo)
        self.count_in = check_bound("count_in", self.count_in)
        self.lead_ms = check_bound("lead_ms", self.lead_ms)
        self.follow_after = check_bound("follow_after", self.follow_after)
        for name in ("key", "scale"):
            v = getattr(self, name)
            if v is not None:
                parse_key(v)
        try:
            num, den = (int(x) for x in str(self.time_signature).split("/"))
        except ValueError:
            raise ConfigError(f"time signature must look like 4/4 or 6/8, not {self.time_signature!r}") from None
        if not (1 <= num <= 12 and den in (4, 8)):
            raise ConfigError(f"time signature must have 1 to 12 quarter or eighth beats, not {self.time_signature!r}")

    @property
    def metre(self) -> tuple[int, int]:
        num, den = (int(x) for x in self.time_signature.split("/"))
        return num, den
