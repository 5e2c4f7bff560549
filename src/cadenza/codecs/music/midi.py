"""MIDI files and note clean-up for the music codec: read (with one-sentence errors),
write atomically, merge tracks by instrument, split overlapping unisons, normalise metres."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from cadenza.errors import DataError
from cadenza.io import atomic_path


# --------------------------------------------------------------------------- MIDI files
def load_midi(path):
    """Read a MIDI file into a symusic score; bad files raise DataError with one sentence."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p} does not exist")
    if p.is_dir():
        raise DataError(f"{p} is a folder, not a MIDI file")
    data = p.read_bytes()
    return score_from_bytes(data, name=str(p))


def score_from_bytes(data: bytes, name: str = "input"):
    import symusic

    if len(data) == 0:
        raise DataError(f"{name} is empty")
    if data[:4] == b"RIFF" and data[8:12] == b"RMID":  # RIFF-wrapped MIDI
        idx = data.find(b"MThd")
        data = data[idx:] if idx >= 0 else data
    if data[:4] != b"MThd":
        raise DataError(f"{name} is not a MIDI file (it does not start with a MIDI header)")
    try:
        score = symusic.Score.from_midi(data)
    except Exception as exc:  # symusic raises plain RuntimeError/ValueError on bad bytes
        raise DataError(f"{name} is a corrupt MIDI file ({str(exc).strip().splitlines()[0][:120]})") from None
    if score.note_num() == 0:
        raise DataError(f"{name} has no notes")
    return score


def write_midi(score, path) -> Path:
    """Write a symusic score as a MIDI file atomically.

    Notes of one pitch that overlap on one track cannot be told apart in a MIDI file (its
    note-offs name only the pitch), so such a track is first split into as many tracks of
    the same program as needed; reading the file back gives exactly the same notes.
    """
    path = Path(path)
    score = split_overlapping_notes(as_tick(score))
    with atomic_path(path) as tmp:
        score.dump_midi(str(tmp))
    return path


def merge_tracks_by_program(score):
    """One track per (program, drums), notes sorted, tracks ordered by program, drums last."""
    import symusic

    groups: dict[tuple[bool, int], list] = {}
    for t in score.tracks:
        if len(t.notes):
            groups.setdefault((bool(t.is_drum), int(t.program)), []).append(t)
    if all(len(v) == 1 for v in groups.values()) and list(groups) == sorted(groups) \
            and len(groups) == len(score.tracks):
        for t in score.tracks:
            t.notes.sort()
        return score
    tracks = []
    for key in sorted(groups):
        ts = groups[key]
        arrs = [t.notes.numpy() for t in ts]
        merged = symusic.Track(name=ts[0].name, program=key[1], is_drum=key[0])
        merged.notes = symusic.Note.from_numpy(*(np.concatenate([a[f] for a in arrs])
                                                 for f in ("time", "duration", "pitch", "velocity")))
        merged.notes.sort()
        for t in ts:  # keep whatever else the tracks carry
            for name in ("controls", "pitch_bends", "pedals", "lyrics"):
                if hasattr(t, name) and len(getattr(t, name)):
                    getattr(merged, name).extend(getattr(t, name))
        tracks.append(merged)
    score.tracks.clear()
    for t in tracks:
        score.tracks.append(t)
    return score


def sort_notes(track) -> None:
    """Sort a track's notes by (onset, pitch, duration, velocity), in place."""
    import symusic

    if len(track.notes) < 2:
        return
    a = track.notes.numpy()
    order = np.lexsort((a["velocity"], a["duration"], a["pitch"], a["time"]))
    if np.all(order[1:] > order[:-1]):
        return
    track.notes = symusic.Note.from_numpy(*(a[f][order] for f in ("time", "duration", "pitch", "velocity")))


def split_overlapping_notes(score):
    """A copy where no track holds two overlapping notes of the same pitch (see write_midi)."""
    import symusic

    if not any(_has_unison_overlap(t) for t in score.tracks):
        return score
    score = score.copy()
    tracks = list(score.tracks)
    score.tracks.clear()
    for t in tracks:
        if not _has_unison_overlap(t):
            score.tracks.append(t)
            continue
        lanes: list[list] = []      # notes per new track
        busy: list[dict] = []       # pitch -> end tick, per new track
        for n in sorted(t.notes, key=lambda n: (n.time, n.pitch, n.duration)):
            for lane, ends in zip(lanes, busy):
                if ends.get(n.pitch, -1) <= n.time:
                    break
            else:
                lanes.append([])
                busy.append({})
                lane, ends = lanes[-1], busy[-1]
            lane.append(n)
            ends[n.pitch] = n.time + n.duration
        for k, lane in enumerate(lanes):
            nt = t.copy() if k == 0 else symusic.Track(name=t.name, program=t.program, is_drum=t.is_drum)
            nt.notes.clear()
            for n in lane:
                nt.notes.append(n)
            score.tracks.append(nt)
    return score


def _has_unison_overlap(track) -> bool:
    if len(track.notes) < 2:
        return False
    a = track.notes.numpy()
    order = np.lexsort((a["time"], a["pitch"]))
    p, t, d = a["pitch"][order], a["time"][order], a["duration"][order]
    same = p[1:] == p[:-1]
    return bool(np.any(same & (t[1:] < t[:-1] + d[:-1])))


def as_tick(score):
    import symusic.core

    return score if isinstance(score, symusic.core.ScoreTick) else score.to("tick")


def normalize_time_signature(num: int, den: int, supported: dict | None = None):
    """Write a metre with a supported denominator and the same bar length, or None.

    2/2 -> 4/4, 3/2 -> 6/4, 6/16 -> 3/8. ``supported`` maps denominators to numerators.
    """
    supported = supported or {4: list(range(1, 9)), 8: list(range(2, 13))}
    num, den = int(num), int(den)
    if num < 1 or den < 1:
        return None                      # 0/0, 3/0, 0/4: not a metre
    if den in supported and num in supported[den]:
        return num, den
    for d in sorted(supported):
        n = Fraction(num * d, den)
        if n.denominator == 1 and int(n) in supported[d]:
            return int(n), d
    return None


def note_tuples(score) -> list[tuple]:
    """Every note as (onset, duration, pitch, velocity, program) with times in quarter notes
    (exact fractions), sorted; drums have program -1. For comparing scores of any tpq."""
    score = as_tick(score)
    tpq = score.ticks_per_quarter
    out = []
    for t in score.tracks:
        prog = -1 if t.is_drum else int(t.program)
        for n in t.notes:
            out.append((Fraction(int(n.time), tpq), Fraction(int(n.duration), tpq), int(n.pitch), int(n.velocity), prog))
    out.sort()
    return out


def score_of_notes(notes, tempo: float, time_signature=(4, 4), tpq: int = 480):
    """A symusic score (ticks) from notes given in quarter-note beats: objects with ``pitch``,
    ``start``, ``duration``, ``velocity`` and ``program`` (one track per program, in program order)."""
    import symusic

    score = symusic.Score(tpq)
    score.tempos.append(symusic.Tempo(0, qpm=float(tempo)))
    score.time_signatures.append(symusic.TimeSignature(0, int(time_signature[0]), int(time_signature[1])))
    tracks: dict[int, object] = {}
    for n in sorted(notes, key=lambda n: (n.start, n.pitch)):
        t = tracks.get(n.program)
        if t is None:
            t = tracks[n.program] = symusic.Track(name=f"program {n.program}", program=n.program)
        t.notes.append(symusic.Note(round(n.start * tpq), max(1, round(n.duration * tpq)), n.pitch, n.velocity))
    for p in sorted(tracks):
        score.tracks.append(tracks[p])
    return score
