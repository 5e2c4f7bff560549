"""Cadenza Studio: a person and the model writing one piece together.

A ``StudioSession`` holds the piece as notes (each with who wrote it), the suggestions the
model has made and not yet had accepted or rejected, and an undo/redo history. It is the
library under ``/api/studio`` (``cadenza.server.studio``); the page is ``/studio``.

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
- Infilling with a left-to-right model (no retraining): ``k`` candidates for the gap are
  sampled given the left context (under the constraints), and the one under which the
  model finds the right context (the bars after the gap) likeliest, in bits per token, is
  kept. ``benchmarks/studio.py`` measures what this buys over a random candidate.
- ``export()``: MIDI with one track per author ("person", "Cadenza"), Cadenza's credit line
  with the notes' hash, and the provenance record with per-note credit.
"""

from __future__ import annotations


import itertools
import math
import threading
import time
from dataclasses import asdict, dataclass, field, replace

import torch

from cadenza.errors import ConfigError
from cadenza.music.constraints import ConstrainedPolicy, Constraints
from cadenza.music.grammar import BAR, Policy, RemiState

PERSON, MODEL = "person", "model"
KINDS = ("continue", "answer", "harmonize", "infill")
TPQ = 480
MAX_NOTES = 4096


@dataclass
class SNote:
    """A note of the piece, in quarter-note beats."""

    id: int
    pitch: int
    start: float
    duration: float
    velocity: int = 80
    program: int = 0
    by: str = PERSON

    def to_dict(self) -> dict:
        return asdict(self)

    def key(self) -> tuple:
        return (round(self.start, 6), self.pitch, round(self.duration, 6), self.program)


@dataclass
class Suggestion:
    id: int
    kind: str
    notes: list[SNote]
    replaces: list[int]                 # ids of the piece's notes that accepting removes
    region: tuple[float, float]         # beats the suggestion may change
    request: dict
    elapsed_s: float = 0.0
    info: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"id": self.id, "kind": self.kind, "notes": [n.to_dict() for n in self.notes],
                "replaces": list(self.replaces), "region": list(self.region), "request": self.request,
                "elapsed_s": self.elapsed_s, "info": self.info}


def check_note(n: dict) -> dict:
    """A played note as a dict, validated (ConfigError with one sentence)."""
    out = {}
    for k, lo, hi, kind in (("pitch", 0, 127, int), ("start", 0, 100_000, float), ("duration", 1e-3, 64, float),
                            ("velocity", 1, 127, int), ("program", 0, 127, int)):
        v = n.get(k, {"velocity": 80, "program": 0}.get(k))
        if v is None:
            raise ConfigError(f"a note needs {k}")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (kind is int and int(v) != v):
            raise ConfigError(f"note {k} must be a {'whole ' if kind is int else ''}number, not {v!r}")
        if not lo <= v <= hi:
            raise ConfigError(f"note {k} must be from {lo:g} to {hi:g}, not {v!r}")
        out[k] = kind(v)
    return out


class StudioSession:
    def __init__(self, mm, tempo: float = 100.0, time_signature: str = "4/4", key: str | None = "C",
                 style: str | None = "folk", seed: int = 0):
        from cadenza.music.generate import _check_style, remi_for

        self.mm, self.codec = mm, mm.codec
        self.remi = remi_for(self.codec)
        if isinstance(tempo, bool) or not isinstance(tempo, (int, float)) or not 30 <= tempo <= 240:
            raise ConfigError(f"tempo must be from 30 to 240 beats per minute, not {tempo!r}")
        self.tempo = float(tempo)
        style = _check_style(self.codec, style)
        if style is None:       # the prefix needs every slot: the style the model finds likeliest first
            style = self._likeliest_style()
        slots = self.codec.conditioning(style=style, key=key or "C", tempo=tempo,
                                        time_signature=time_signature)
        self.prefix = [self.codec.bos_id] + slots
        self.ts = self.remi.value[slots[3]]
        self.key = key or "C"
        self.style = style
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
        self._ctx: list[int] = []
        self._cache = None
        self._p0 = None
        self.steps_read = 0          # tokens read by the cache (cached steps + re-reads)

    def _likeliest_style(self) -> str:
        offered = list(self.codec.offered_styles())
        ids = [self.codec.style_id(s) for s in offered]
        with torch.inference_mode():
            logits = self.mm.model(torch.tensor([[self.codec.bos_id]]))[0, -1]
        return offered[int(torch.argmax(logits[ids]))]

    # ---- the piece as tokens --------------------------------------------------------------
    def _score(self, notes):
        from cadenza.codecs.music import score_of_notes

        return score_of_notes(notes, self.tempo, self.ts, TPQ)

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
        """Make the cache hold ``ids``: the new tokens only, when they extend what it read."""
        model = self.mm.model
        n = len(self._ctx)
        with torch.inference_mode():
            if self._cache is not None and ids[:n] == self._ctx and len(ids) > n and len(ids) <= model.config.max_len:
                for t in ids[n:]:
                    logits = model(torch.tensor([[t]]), cache=self._cache)[0, -1]
                self.steps_read += len(ids) - n
            elif self._cache is None or ids != self._ctx:
                keep = ids[-(model.config.max_len - 8):]
                self._cache = model.new_cache(1)
                logits = model(torch.tensor([keep]), cache=self._cache)[0, -1]
                self.steps_read += len(keep)
                ids = keep if len(keep) < len(ids) else ids
            else:
                return
        self._ctx = list(ids)
        self._p0 = torch.softmax(logits.float(), dim=-1)

    def predictions(self, top: int = 5) -> list[dict]:
        """The ``top`` likeliest pitches of the next note, as ``predict_next`` defines it."""
        from cadenza.music.generate import _next_note_core, pitch_name

        ids = self.tokens()
        self._read(ids)
        state = RemiState(self.remi, record=False).feed_all(self._ctx)
        with torch.inference_mode():
            joint = _next_note_core(self.mm.model, self.remi, self._ctx, state, 4, 0.9,
                                    base=self._cache, p0=self._p0)[0]
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
                seed: int | None = None) -> Suggestion:
        if kind not in KINDS:
            raise ConfigError(f"unknown suggestion kind {kind!r}; choose one of {', '.join(KINDS)}")
        if isinstance(bars, bool) or not isinstance(bars, int) or not 1 <= bars <= 32:
            raise ConfigError(f"bars must be a whole number from 1 to 32, not {bars!r}")
        constraints = constraints or Constraints()
        seed = self.seed + len(self.undo_stack) * 1000 + next(self._sids) if seed is None else int(seed)
        request = {"kind": kind, "bars": bars, "voices": voices, "from_bar": from_bar, "to_bar": to_bar,
                   "constraints": constraints.to_dict(), "k": k, "seed": seed}
        t0 = time.perf_counter()
        if kind == "infill":
            notes, replaces, region, info = self._infill(from_bar, to_bar, constraints, k, seed)
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
        from cadenza.music.generate import continue_piece, harmonize

        score = self._score(list(self.notes.values()))
        end = max(n.start + n.duration for n in self.notes.values())
        if kind == "harmonize":
            person = [n for n in self.notes.values() if n.by == PERSON]
            if not person:
                raise ConfigError("harmonize needs the person's melody: play some notes first")
            piece = harmonize(self.mm, self._score(person), voices=voices, style=self.style or "bach", seed=seed)
            new = self._piece_notes(piece)
            new = [n for n in new if constraints.pitch_ok(n.pitch)] if constraints.scale else new
            lo, hi = min(n.start for n in person), max(n.start + n.duration for n in person)
            return new, [], (lo, hi), {}
        piece = continue_piece(self.mm, score, bars=bars, style=self.style, seed=seed,
                               constraints=constraints, from_next_bar=(kind == "answer"))
        new = [n for n in self._piece_notes(piece) if n.start >= min(n2.start for n2 in self.notes.values())]
        start = (math.floor(end / self.bar_beats + 1e-9) + (1 if kind == "answer" else 0)) * self.bar_beats
        return new, [], (min([n.start for n in new], default=start), max([n.start + n.duration for n in new],
                                                                        default=start)), {}

    # ---- infilling ------------------------------------------------------------------------
    def _region_policy(self, constraints, program: int):
        mid = self.codec.config.levels // 2
        mood = [self.codec.mood_id(mid, mid)]
        p = Policy(self.remi, programs=[program], ts=self.ts, prefix=dict(zip(
            ("style", "key", "tempo", "time_signature"), self.prefix[1:])), moods=lambda seg: mood)
        return ConstrainedPolicy(p, constraints) if not constraints.empty else p

    def _infill(self, from_bar, to_bar, constraints, k, seed):
        from cadenza.music.decoder import GrammarDecoder

        if not isinstance(from_bar, int) or not isinstance(to_bar, int) or isinstance(from_bar, bool) \
                or not 0 <= from_bar < to_bar or to_bar - from_bar > 16:
            raise ConfigError("infill needs from_bar < to_bar (bars counted from 0, at most 16 of them)")
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 32:
            raise ConfigError(f"k (candidates) must be from 1 to 32, not {k!r}")
        a, b = from_bar * self.bar_beats, to_bar * self.bar_beats
        left = [n for n in self.notes.values() if n.start < a - 1e-9]
        right = [n for n in self.notes.values() if n.start >= b - 1e-9]
        inside = [n for n in self.notes.values() if a - 1e-9 <= n.start < b - 1e-9]
        programs = [n.program for n in inside] or [n.program for n in self.notes.values()] or [0]
        program = max(set(programs), key=programs.count)
        ctx = self._open_bar(left, from_bar)
        policy = self._region_policy(constraints, program)
        limit = 96 * (to_bar - from_bar)
        primed = self._prime(ctx)          # the left context is read once; each candidate forks it
        cands = []
        for j in range(k):
            state = RemiState(self.remi, record=True).feed_all(ctx)
            before = len(state.notes)
            dec = GrammarDecoder(self.mm.model, ctx, policy, state, seed=seed + j, desc="infill",
                                 primed=None if primed is None else (primed[0].fork(), primed[1]))
            def opens_to_bar(tok, state=state):       # the bar line that would open bar to_bar
                return self.remi.kind[tok] == BAR and state.bars >= to_bar

            try:
                while dec.new < limit and dec.step(stop=opens_to_bar) is not None:
                    pass
            finally:
                dec.close()
            notes = []
            for onset, dur, pitch, prog, vel in state.notes[before:]:
                start = onset / self.remi.tpq
                if a - 1e-9 <= start < b - 1e-9:
                    notes.append(SNote(id=0, pitch=int(pitch), start=start, duration=dur / self.remi.tpq,
                                       velocity=int(vel or 80), program=max(0, int(prog)), by=MODEL))
            cands.append(notes)
        scored = [self._right_score(left, c, right, to_bar, primed) for c in cands]
        scores = [bits for bits, _ in scored]
        best = min(range(k), key=lambda j: scores[j])
        info = {"candidates": k, "right_bits_per_token": scores, "chosen": best, "right_tokens": scored[best][1]}
        return cands[best], sorted(n.id for n in inside), (a, b), info

    def _open_bar(self, left, bar: int) -> list[int]:
        """Tokens of the notes before ``bar``, up to and including the Bar (and Mood) that opens it."""
        ids = self.tokens(left, bars=bar + 1)
        i = self._split_at_bar(ids, bar)
        if i == len(ids):
            raise AssertionError("padding made too few bars")
        out = ids[:i + 1]
        if i + 1 < len(ids) and self.codec.token_type(ids[i + 1]) == "Mood":
            out.append(ids[i + 1])
        return out

    def _split_at_bar(self, ids, bar: int) -> int:
        seen = 0
        for i, t in enumerate(ids):
            if self.remi.kind[t] == BAR:
                seen += 1
                if seen == bar + 1:
                    return i
        return len(ids)

    def _prime(self, ctx):
        """(cache, logits, ctx) after reading ``ctx`` once, or None when it is too long to keep."""
        model = self.mm.model
        if len(ctx) >= model.config.max_len - 8:
            return None
        with torch.inference_mode():
            cache = model.new_cache(1)
            logits = model(torch.tensor([ctx]), cache=cache)[0, -1]
        return cache, logits, list(ctx)

    def _right_bits(self, left, cand, right, to_bar, primed=None) -> float:
        """Bits per token of everything from bar ``to_bar`` on, with ``cand`` in the gap (the
        candidate's own bits per token where nothing follows the gap). ``primed`` (from
        ``_prime``): the left context already read, so only the gap and what follows are."""
        return self._right_score(left, cand, right, to_bar, primed)[0]

    def _right_score(self, left, cand, right, to_bar, primed=None) -> tuple[float, int]:
        """(``_right_bits``, the number of tokens from bar ``to_bar`` on)."""
        ids = self.tokens(left + cand + right, bars=to_bar + 1)
        model = self.mm.model
        cut = self._split_at_bar(ids, to_bar)
        right_tokens = len(ids) - cut
        if len(ids) - cut < 2 or not right:
            cut = max(1, self._split_at_bar(ids, max(0, to_bar - 1)))
        if primed is not None:
            cache0, logits0, ctx = primed
            n0 = len(ctx)
            if ids[:n0] == ctx and n0 <= cut < len(ids) <= model.config.max_len:
                with torch.inference_mode():
                    rows = [logits0.float().unsqueeze(0)]
                    if len(ids) - 1 > n0:
                        rows.append(model(torch.tensor([ids[n0:-1]]), cache=cache0.fork())[0].float())
                    logp = torch.log_softmax(torch.cat(rows), dim=-1)       # predicts ids[n0:]
                tgt = torch.tensor(ids[n0:])
                ll = logp.gather(-1, tgt.unsqueeze(-1)).squeeze(-1)[cut - n0:]
                return float(-ll.mean() / math.log(2)), right_tokens
        lo = max(0, len(ids) - model.config.max_len)
        x = torch.tensor([ids[lo:]])
        with torch.inference_mode():
            logp = torch.log_softmax(model(x[:, :-1]).float(), dim=-1)[0]
        tgt = x[0, 1:]
        ll = logp.gather(-1, tgt.unsqueeze(-1)).squeeze(-1)
        start = max(0, cut - lo - 1)
        part = ll[start:]
        return (float(-part.mean() / math.log(2)) if part.numel() else 0.0), right_tokens

    # ---- export -------------------------------------------------------------------------
    def export(self) -> tuple[bytes, dict]:
        """(MIDI bytes, provenance record): tracks "person" and "Cadenza", the credit line
        with the notes' hash, every note with who wrote it."""
        import symusic

        from cadenza._version import __version__
        from cadenza.music.output import midi_bytes, provenance_line
        from cadenza.music.provenance import credit_summary, note_credit, notes_sha256

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
        notes = note_credit(s, ["person"])
        digest = notes_sha256(s)
        record = {"schema": "cadenza.provenance/1", "generator": "Cadenza", "cadenza_version": __version__,
                  "kind": "studio", "model": self.mm.provenance(), "seed": self.seed,
                  "settings": {"tempo": self.tempo, "time_signature": f"{self.ts[0]}/{self.ts[1]}", "key": self.key,
                               "style": self.style},
                  "notes_sha256": digest, "ticks_per_quarter": TPQ, "credit": credit_summary(notes), "notes": notes}
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

