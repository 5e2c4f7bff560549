"""Cadenza Studio: a person and the model writing one piece together.

A ``StudioSession`` holds the piece as notes (each with who wrote it), the suggestions the
model has made and not yet had accepted or rejected, and an undo/redo history. It is the
library under ``/api/studio`` (``cadenza.server.routes.studio``); the page is ``/studio``.

- ``play(notes)`` adds the person's notes and returns the model's five likeliest next
  pitches. The session keeps a KV cache of the piece's tokens: when the new tokens extend
  the ones it has read (the usual case: a note played after the last one), only the new
  tokens are read, one cached step each; otherwise (a note inserted earlier) it reads the
  piece again.
- ``suggest(kind, ...)``: ``continue`` (N bars after the piece), ``answer`` (N bars from the
  next bar line, after the person's phrase), ``harmonize`` (voices under the person's
  melody) or ``infill`` (regenerate bars [from_bar, to_bar), keeping everything else).
  Every kind takes ``Constraints`` (scale lock, role, density). A suggestion says which
  notes it would replace (``replaces``); ``accept`` changes exactly those, nothing else.
- Infilling with a left-to-right model (no retraining): ``cadenza.music.infill``.
- ``export()``: MIDI with one track per author ("person", "Cadenza"), Cadenza's credit line
  with the notes' hash, and the provenance record with per-note credit.
"""

from __future__ import annotations


import itertools
import math
import threading
import time
from dataclasses import replace

import torch

from cadenza.bounds import LIVE_TEMPO, STUDIO_BARS
from cadenza.errors import ConfigError
from cadenza.music.constraints import Constraints
from cadenza.music.grammar import RemiState
from cadenza.music.infill import infill
from cadenza.music.inputs import likeliest_style
from cadenza.music.studio_notes import (MODEL, PERSON, Draft, SNote, Suggestion, check_note,  # noqa: F401
                                            followed_voice, line)

KINDS = ("continue", "answer", "harmonize", "infill")
TPQ = 480
MAX_NOTES = 4096


class StudioSession:
    def __init__(self, mm, tempo: float = 100.0, time_signature: str = "4/4", key: str | None = "C",
                 style: str | None = "folk", seed: int = 0):
        from cadenza.music.inputs import check_style, remi_for

        self.mm, self.codec = mm, mm.codec
        self.remi = remi_for(self.codec)
        if isinstance(tempo, bool) or not isinstance(tempo, (int, float)) or not LIVE_TEMPO.lo <= tempo <= LIVE_TEMPO.hi:
            raise ConfigError(f"tempo must be from {LIVE_TEMPO.lo} to {LIVE_TEMPO.hi} beats per minute, not {tempo!r}")
        self.tempo = float(tempo)
        style = check_style(self.codec, style)
        if style is None:       # the prefix needs every slot: the style the model finds likeliest first
            style = likeliest_style(self.mm)
        self.style, self.time_signature = style, time_signature
        self.set_key(key or "C")
        self.bar_beats = self.ts[0] * 4 / self.ts[1]
        self.seed = int(seed)
        self.notes: dict[int, SNote] = {}
        self.suggestions: dict[int, Suggestion] = {}
        self._ids = itertools.count(1)
        self._sids = itertools.count(1)
        self.undo_stack: list[dict] = []
        self.redo_stack: list[dict] = []
        self.lock = threading.Lock()
        self.touched = time.monotonic()
        self._dec = None             # a decoder that has read the piece so far (for predictions)
        self.steps_read = 0          # tokens it read (cached steps + re-reads)

    def set_key(self, key: str) -> None:
        """The key the model is given (the prefix's Key token for predictions and infill, the key
        signature of what continue and harmonize read); suggestions made before go stale."""
        slots = self.codec.conditioning(style=self.style, key=key, tempo=self.tempo,
                                        time_signature=self.time_signature)
        self.prefix = [self.codec.bos_id] + slots
        self.ts = self.remi.value[slots[3]]
        self.key = key
        self._dec = None
        if hasattr(self, "suggestions"):
            self.suggestions.clear()

    # ---- the piece as tokens --------------------------------------------------------------
    def _score(self, notes):
        """The notes as a score, with the session key's signature (continue and harmonize
        estimate their key with it as the hint)."""
        import symusic

        from cadenza.codecs.music import parse_key, score_of_notes

        score = score_of_notes(notes, self.tempo, self.ts, TPQ)
        tonic, mode = parse_key(self.key)
        sharps = ((tonic if mode == "major" else (tonic + 3) % 12) * 7) % 12
        score.key_signatures.append(symusic.KeySignature(0, sharps - 12 if sharps > 6 else sharps,
                                                         1 if mode == "minor" else 0))
        return score

    def tokens(self, notes=None, bars: int | None = None) -> list[int]:
        """BOS, the session's prefix and the lean body of ``notes`` (default: the piece), with
        every segment's Mood at the middle level; padded with empty bars to ``bars`` bars."""
        notes = list(self.notes.values()) if notes is None else list(notes)
        c = self.codec
        full = c.remi_ids(self._score(notes)) if notes else []
        have = sum(1 for i in full if c.token_type(i) == "Bar")
        ts_id = c.time_signature_id(*self.ts)
        for _ in range(max(0, (bars or 0) - have)):
            full += [c.bar_ids()[0], ts_id]
        if not full:
            full = [c.bar_ids()[0], ts_id]
        mid = c.config.levels // 2
        body, _ = c.lean_body(full, self.ts, [(mid, mid)] * (len(full) // 2 + 1))
        return self.prefix + body

    def _read(self, ids: list[int]) -> None:
        """Make the kept decoder hold ``ids``: the new tokens only, when they extend what it read."""
        from cadenza.music.predict import input_decoder

        dec = self._dec
        if dec is not None and ids == dec.context:
            return
        n = len(dec.context) if dec is not None else 0
        if dec is not None and ids[:n] == dec.context and len(ids) <= self.mm.network.config.max_len - 8:
            for t in ids[n:]:
                dec.take(t)
            self.steps_read += len(ids) - n
        else:
            self._dec = input_decoder(self.mm.network, ids)
            self.steps_read += len(self._dec.context)

    def predictions(self, top: int = 5) -> list[dict]:
        """The ``top`` likeliest pitches of the next note of the voice the person is playing
        (``followed_voice``: the melody, or the bass they play), as ``predict_next`` defines it
        (with the piece memory)."""
        from cadenza.codecs.music.names import pitch_name
        from cadenza.music.predict import next_note_distribution, with_memory

        self._read(self.tokens(followed_voice(list(self.notes.values()))))
        state = RemiState(self.remi, record=True).feed_all(self._dec.context)
        with torch.inference_mode():
            joint = with_memory(self.remi, next_note_distribution(self.remi, self._dec, state, 4, 0.9).pitches, state)
        ranked = sorted(joint.items(), key=lambda kv: -kv[1])[:top]
        return [{"pitch": int(p), "name": pitch_name(p), "probability": float(q)} for p, q in ranked]

    # ---- editing ------------------------------------------------------------------------
    def _snapshot(self) -> None:
        self.undo_stack.append({i: replace(n) for i, n in self.notes.items()})
        del self.undo_stack[:-200]
        self.redo_stack.clear()

    def play(self, notes: list[dict]) -> list[int]:
        """Add the person's notes; returns their ids."""
        checked = [check_note(n) for n in notes]
        if len(self.notes) + len(checked) > MAX_NOTES:
            raise ConfigError(f"a studio piece holds at most {MAX_NOTES:,} notes")
        self._snapshot()
        ids = []
        for n in checked:
            i = next(self._ids)
            self.notes[i] = SNote(id=i, by=PERSON, **n)
            ids.append(i)
        self.suggestions.clear()          # what they were made against has changed
        return ids

    def keep(self, notes: list[dict], offset: float = 0.0) -> list[int]:
        """Put a play-along take into the piece (``cadenza.music.live``: "Keep"): every note with
        its author (``by``: "person" or "model"), ``offset`` beats later. One undo step."""
        checked = []
        for n in notes:
            by = n.get("by", PERSON)
            if by not in (PERSON, MODEL):
                raise ConfigError(f"a kept note is by 'person' or 'model', not {by!r}")
            start = float(n.get("start", 0.0)) + offset
            c = check_note({**n, "start": 0.0 if -0.1 < start < 0 else start})   # a hair early for the first beat
            checked.append((c, by))
        if len(self.notes) + len(checked) > MAX_NOTES:
            raise ConfigError(f"a studio piece holds at most {MAX_NOTES:,} notes")
        self._snapshot()
        ids = []
        for c, by in checked:
            i = next(self._ids)
            self.notes[i] = SNote(id=i, by=by, **c)
            ids.append(i)
        self.suggestions.clear()
        return ids

    def delete(self, ids: list[int]) -> None:
        missing = [i for i in ids if i not in self.notes]
        if missing:
            raise KeyError(f"no note {missing[0]} in this piece")
        self._snapshot()
        for i in ids:
            del self.notes[i]
        self.suggestions.clear()

    def undo(self) -> bool:
        if not self.undo_stack:
            return False
        self.redo_stack.append(self.notes)
        self.notes = self.undo_stack.pop()
        self.suggestions.clear()
        return True

    def redo(self) -> bool:
        if not self.redo_stack:
            return False
        self.undo_stack.append(self.notes)
        self.notes = self.redo_stack.pop()
        self.suggestions.clear()
        return True

    def accept(self, sid: int) -> list[int]:
        """Put a suggestion into the piece: its ``replaces`` notes go, its notes come (as the
        model's); no other note changes. Returns the new notes' ids."""
        s = self.suggestions.pop(sid, None)
        if s is None:
            raise KeyError(f"no suggestion {sid} (it was accepted, rejected, or the piece changed since)")
        self._snapshot()
        for i in s.replaces:
            self.notes.pop(i, None)
        ids = []
        for n in s.notes:
            i = next(self._ids)
            self.notes[i] = replace(n, id=i, by=MODEL)
            ids.append(i)
        self.suggestions.clear()
        return ids

    def reject(self, sid: int) -> None:
        if self.suggestions.pop(sid, None) is None:
            raise KeyError(f"no suggestion {sid}")

    # ---- suggestions ----------------------------------------------------------------------
    def suggest(self, kind: str, bars: int = 4, voices: int = 2, from_bar: int | None = None,
                to_bar: int | None = None, constraints: Constraints | None = None, k: int = 8,
                seed: int | None = None, keep: str = "person") -> Suggestion:
        if kind not in KINDS:
            raise ConfigError(f"unknown suggestion kind {kind!r}; choose one of {', '.join(KINDS)}")
        if isinstance(bars, bool) or not isinstance(bars, int) or not STUDIO_BARS.lo <= bars <= STUDIO_BARS.hi:
            raise ConfigError(f"bars must be a whole number from {STUDIO_BARS.lo} to {STUDIO_BARS.hi}, not {bars!r}")
        constraints = constraints or Constraints()
        seed = self.seed + len(self.undo_stack) * 1000 + next(self._sids) if seed is None else int(seed)
        request = {"kind": kind, "bars": bars, "voices": voices, "from_bar": from_bar, "to_bar": to_bar,
                   "constraints": constraints.to_dict(), "k": k, "seed": seed, "keep": keep}
        t0 = time.perf_counter()
        if kind == "infill":
            notes, replaces, region, info = infill(self, from_bar, to_bar, constraints, k, seed, keep)
        elif kind == "harmonize":
            notes, replaces, region, info = self._harmonize(voices, constraints, seed, from_bar, to_bar)
        else:
            if not self.notes:
                raise ConfigError(f"play or write some notes first: {kind} needs a piece to work from")
            notes, replaces, region, info = self._extend(kind, bars, voices, constraints, seed)
        sid = next(self._sids)
        s = Suggestion(id=sid, kind=kind, notes=notes, replaces=replaces, region=region, request=request,
                       elapsed_s=time.perf_counter() - t0, info=info)
        self.suggestions[sid] = s
        return s

    def regenerate(self, sid: int) -> Suggestion:
        old = self.suggestions.pop(sid, None)
        if old is None:
            raise KeyError(f"no suggestion {sid}")
        r = dict(old.request)
        r["seed"] = r["seed"] + 7919
        r["constraints"] = Constraints(**r["constraints"])
        return self.suggest(**r)

    def _piece_notes(self, piece, t0_beats: float = 0.0) -> list[SNote]:
        """The model's notes of a generated piece (not the ones it kept from the input)."""
        score = piece.score()
        tpq = score.ticks_per_quarter
        kept = {piece.kept_label or "input", "input"}
        out = []
        for t in score.tracks:
            if t.name in kept:
                continue
            for n in t.notes:
                out.append(SNote(id=0, pitch=int(n.pitch), start=n.time / tpq + t0_beats, duration=n.duration / tpq,
                                 velocity=int(n.velocity), program=0 if t.is_drum else int(t.program), by=MODEL))
        return out

    def _extend(self, kind, bars, voices, constraints, seed):
        from cadenza.music.composition import continue_piece

        score = self._score(list(self.notes.values()))
        end = max(n.start + n.duration for n in self.notes.values())
        piece = continue_piece(self.mm, score, bars=bars, style=self.style, seed=seed,
                               constraints=constraints, from_next_bar=(kind == "answer"), ending=False)
        new = [n for n in self._piece_notes(piece) if n.start >= min(n2.start for n2 in self.notes.values())]
        start = (math.floor(end / self.bar_beats + 1e-9) + (1 if kind == "answer" else 0)) * self.bar_beats
        return Draft(new, [], (min([n.start for n in new], default=start),
                               max([n.start + n.duration for n in new], default=start)), {})

    def _harmonize(self, voices, constraints, seed, from_bar=None, to_bar=None):
        """Voices under the piece's top line, in bars [from_bar, to_bar) or the whole piece: the
        top line and the person's other notes stay (the latter as kept voices); the model's other
        notes there are what the new voices replace."""
        from cadenza.music.harmony import harmonize

        bb = self.bar_beats
        if (from_bar is None) != (to_bar is None) or (from_bar is not None and not 0 <= from_bar < to_bar):
            raise ConfigError("harmonize takes both from_bar and to_bar (from_bar < to_bar, bars from 0) "
                              "or neither (the whole piece)")
        a, b = (0.0, math.inf) if from_bar is None else (from_bar * bb, to_bar * bb)
        region = [n for n in self.notes.values() if a - 1e-9 <= n.start < b - 1e-9]
        if not region:
            where = "the piece" if from_bar is None else f"bars {from_bar + 1}-{to_bar}"
            raise ConfigError(f"harmonize needs a melody: {where} has no notes")
        melody = line(region)
        top = {n.id for n in melody}
        lower = [n for n in region if n.id not in top and n.by == PERSON]
        t0 = math.floor(min(n.start for n in region) / bb + 1e-9) * bb     # whole bars earlier
        score = self._score([replace(n, start=n.start - t0) for n in melody])
        if lower:
            for t in self._score([replace(n, start=n.start - t0) for n in lower]).tracks:
                score.tracks.append(t)
        piece = harmonize(self.mm, score, voices=voices, style=self.style or "bach", seed=seed, keep=bool(lower))
        new = self._piece_notes(piece, t0)
        new = [n for n in new if constraints.pitch_ok(n.pitch)] if constraints.scale else new
        replaces = sorted(n.id for n in region if n.id not in top and n.by == MODEL)
        lo, hi = min(n.start for n in region), max(n.start + n.duration for n in region)
        return Draft(new, replaces, (lo, hi), {"melody_notes": len(melody), "kept_voices": len(lower)})

    # ---- export -------------------------------------------------------------------------
    def export(self) -> tuple[bytes, dict]:
        """(MIDI bytes, provenance record): tracks "person" and "Cadenza", the credit line
        with the notes' hash, every note with who wrote it."""
        import symusic

        from cadenza._version import __version__
        from cadenza.music.output import midi_bytes, provenance_line
        from cadenza.music.authorship.provenance import SCHEMA, with_notes

        s = symusic.Score(TPQ)
        s.tempos.append(symusic.Tempo(0, qpm=self.tempo))
        s.time_signatures.append(symusic.TimeSignature(0, self.ts[0], self.ts[1]))
        for who, name in ((PERSON, "person"), (MODEL, "Cadenza")):
            mine = sorted((n for n in self.notes.values() if n.by == who), key=lambda n: (n.start, n.pitch))
            for prog in sorted({n.program for n in mine}):
                t = symusic.Track(name=name, program=prog)
                for n in mine:
                    if n.program == prog:
                        t.notes.append(symusic.Note(round(n.start * TPQ), max(1, round(n.duration * TPQ)), n.pitch,
                                                    n.velocity))
                s.tracks.append(t)
        record = with_notes({"schema": SCHEMA, "generator": "Cadenza", "cadenza_version": __version__, "kind": "studio",
                             "model": self.mm.provenance(), "seed": self.seed,
                             "settings": {"tempo": self.tempo, "time_signature": f"{self.ts[0]}/{self.ts[1]}",
                                          "key": self.key, "style": self.style}}, s, ["person"])
        line = (provenance_line(record) + f"; person and model together "
                f"({record['credit']['human_percent']}% of the notes by the person)")
        s.markers.insert(0, symusic.TextMeta(0, line))
        return midi_bytes(s), record

    def state(self) -> dict:
        return {"notes": [n.to_dict() for n in sorted(self.notes.values(), key=lambda n: (n.start, n.pitch))],
                "suggestions": [s.to_dict() for s in self.suggestions.values()],
                "can_undo": bool(self.undo_stack), "can_redo": bool(self.redo_stack),
                "tempo": self.tempo, "time_signature": f"{self.ts[0]}/{self.ts[1]}", "key": self.key,
                "style": self.style, "bar_beats": self.bar_beats}


__all__ = ["StudioSession", "SNote", "Suggestion", "Constraints", "KINDS", "check_note"]

