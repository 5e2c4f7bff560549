"""Reading the music21 corpus: its files, and music21 scores as symusic scores (ticks)."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import numpy as np

from cadenza.bounds import TEMPO
from cadenza.errors import ConfigError
from cadenza.data.music.collections import COLLECTIONS, EXCLUDED_COLLECTIONS

TPQ = 480              # music21 offsets -> ticks; divisible by 3, 5 and 32
MUSIC21_EXTENSIONS = (".mxl", ".xml", ".musicxml", ".krn", ".abc", ".mei")


# --------------------------------------------------------------------------- music21 -> symusic
def m21_to_score(m21, default_tempo: float = 100.0):
    """Convert a music21 Score/Part to a symusic score (ticks, TPQ per quarter).

    Every part becomes a track with its instrument's MIDI program (0 when it names none).
    Ties are merged, grace notes and chord symbols skipped, a pickup bar is shifted so bar
    lines fall on whole bars, dynamics set velocities (music21's default 90 without any).
    Repeats are not expanded here (the corpus build plays them: pool._as_played). Returns (score, tempo_source) where tempo_source is
    "marked" (from the score) or "default" (the collection's typical tempo).
    """
    import symusic
    from music21 import chord, dynamics, harmony, key, meter, note, stream, tempo

    parts = list(m21.parts) if hasattr(m21, "parts") and len(m21.parts) else [m21]
    shift = 0.0
    first_measure = parts[0].getElementsByClass(stream.Measure).first()
    if first_measure is not None and first_measure.paddingLeft:
        shift = float(first_measure.paddingLeft)

    def tick(ql) -> int:
        return int(round((float(ql) + shift) * TPQ))

    def event_tick(ql) -> int:  # metre, key and tempo at the very start stay at 0
        return 0 if float(ql) == 0 else tick(ql)

    score = symusic.Score(TPQ)
    marks, sigs, keys = {}, {}, {}
    for pi, part in enumerate(parts):
        flat = part.flatten()
        inst = part.getInstrument(returnDefault=False) if hasattr(part, "getInstrument") else None
        program = inst.midiProgram if inst is not None and inst.midiProgram is not None else 0
        name = (part.partName or (inst.instrumentName if inst is not None else None) or f"part {pi + 1}")
        velocity = 90
        notes: list[list[int]] = []          # [start, end, pitch, velocity]
        open_ties: dict[int, list[int]] = {}  # pitch -> the note a tie continues
        for el in flat.getElementsByClass((note.Note, chord.Chord, dynamics.Dynamic, tempo.MetronomeMark,
                                           meter.TimeSignature, key.KeySignature)):
            if isinstance(el, dynamics.Dynamic):
                if el.volumeScalar is not None:
                    velocity = int(np.clip(round(el.volumeScalar * 127), 1, 127))
                continue
            if isinstance(el, tempo.MetronomeMark):
                bpm = el.getQuarterBPM()
                if bpm and TEMPO.lo <= bpm <= TEMPO.hi:      # a tempo the codec can encode
                    marks.setdefault(event_tick(el.offset), float(bpm))
                continue
            if isinstance(el, meter.TimeSignature):
                if pi == 0:
                    sigs.setdefault(event_tick(el.offset), (el.numerator, el.denominator))
                continue
            if isinstance(el, key.KeySignature):
                if pi == 0:
                    mode = 1 if isinstance(el, key.Key) and el.mode == "minor" else 0
                    keys.setdefault(event_tick(el.offset), (int(el.sharps), mode))
                continue
            if isinstance(el, harmony.Harmony) or el.duration.isGrace or el.quarterLength <= 0:
                continue
            start = tick(el.offset)
            end = tick(el.offset + el.quarterLength)
            vel = velocity
            if el.volume.velocity is not None and not el.volume.velocityIsRelative:
                vel = int(np.clip(el.volume.velocity, 1, 127))
            members = el.notes if isinstance(el, chord.Chord) else (el,)
            for n in members:
                if not hasattr(n, "pitch"):
                    continue
                midi = int(n.pitch.midi)
                tie = n.tie if n.tie is not None else (el.tie if isinstance(el, chord.Chord) else None)
                kind = tie.type if tie is not None else None
                held = open_ties.get(midi)
                if kind in ("stop", "continue") and held is not None and held[1] == start:
                    held[1] = max(held[1], end)
                    if kind == "stop":
                        del open_ties[midi]
                    continue
                if end <= start or not 0 <= midi <= 127:
                    continue
                row = [start, end, midi, vel]
                notes.append(row)
                if kind in ("start", "continue"):
                    open_ties[midi] = row
                else:
                    open_ties.pop(midi, None)
        if notes:
            track = symusic.Track(name=str(name), program=int(program), is_drum=False)
            for start, end, midi, vel in sorted(notes):
                track.notes.append(symusic.Note(start, end - start, midi, vel))
            score.tracks.append(track)
    tempo_source = "marked" if marks else "default"
    for t, bpm in sorted(marks.items() or [(0, float(default_tempo))]):
        score.tempos.append(symusic.Tempo(t, qpm=bpm))
    if 0 not in marks and marks:  # tempo before the first mark: the first mark's value
        score.tempos.insert(0, symusic.Tempo(0, qpm=sorted(marks.items())[0][1]))
    for t, (n, d) in sorted(sigs.items()):
        score.time_signatures.append(symusic.TimeSignature(t, int(n), int(d)))
    for t, (k, mode) in sorted(keys.items()):
        score.key_signatures.append(symusic.KeySignature(t, k, mode))
    return score, tempo_source


# --------------------------------------------------------------------------- sources
def music21_corpus_dir() -> Path:
    from music21 import corpus

    return Path(corpus.__file__).parent


def music21_sources(collections=None, limit: int | None = None) -> list[tuple[str, Path, str, int | None]]:
    """(collection, path, relative path, pieces to take or None for all) per score file.

    With ``limit``, only the first files of each collection that hold ``limit`` pieces
    are listed (ABC files hold many tunes: they are counted without parsing).
    """
    from music21 import corpus

    root = music21_corpus_dir()
    wanted = list(COLLECTIONS) if not collections else list(collections)
    for name in wanted:
        if name not in COLLECTIONS:
            hint = f" ({EXCLUDED_COLLECTIONS[name]})" if name in EXCLUDED_COLLECTIONS else ""
            raise ConfigError(f"unknown or excluded music21 collection {name!r}{hint}; "
                              f"choose from {', '.join(sorted(COLLECTIONS))}")
    by_coll: dict[str, list[Path]] = {}
    for p in corpus.getCorePaths():
        p = Path(p)
        if p.suffix.lower() not in MUSIC21_EXTENSIONS:
            continue  # .rntxt analyses, images, MuseData
        rel = p.relative_to(root)
        coll = rel.parts[0]
        if coll in wanted:
            by_coll.setdefault(coll, []).append(p)
    out = []
    for coll in wanted:
        files = sorted(by_coll.get(coll, []), key=lambda q: str(q.relative_to(root)))
        need = limit
        for p in files:
            if need is not None and need <= 0:
                break
            take = None
            if need is not None:
                count = len(split_abc(read_score_text(p))[1]) if p.suffix.lower() == ".abc" else 1
                take = min(need, max(count, 1))
                need -= take
            out.append((coll, p, str(p.relative_to(root)), take))
    return out


def split_abc(text: str) -> tuple[str, list[str]]:
    """File header and one text per tune (each starts with its X: line)."""
    chunks = re.split(r"(?m)^(?=X:)", text)
    header = chunks[0] if chunks and not chunks[0].startswith("X:") else ""
    tunes = [c for c in chunks if c.startswith("X:")]
    return header, tunes


def read_score_text(path: Path) -> str:
    """A text score file's contents: UTF-8, else Latin-1."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def one_line(text) -> str:
    return " ".join(str(text).split())[:200]


class ParseTimeout(BaseException):  # not an Exception: music21's broad handlers must not swallow it
    pass


def alarm(seconds: int):
    def handler(signum, frame):
        raise ParseTimeout()
    if seconds and hasattr(signal, "SIGALRM"):
        signal.signal(signal.SIGALRM, handler)
        signal.alarm(int(seconds))


def cancel_alarm():
    if hasattr(signal, "SIGALRM"):
        signal.alarm(0)


def clean_reason(exc: BaseException) -> str:
    if isinstance(exc, ParseTimeout):
        return "timed out"
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {msg}"[:200]
