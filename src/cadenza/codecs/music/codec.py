"""Scores <-> token ids: normalise and quantize a score, the lean REMI stream with its Mood tokens, encode and decode, the tokenizer file."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import warnings
from pathlib import Path

import numpy as np

from cadenza.codecs.music.config import CODEC_NAME, CODEC_VERSION, CONTROL_SLOTS, PREFIX_SLOTS, MusicCodecConfig
from cadenza.codecs.music.features import DEFAULT_TEMPO, MusicFeatures, describe, level_of, parse_key
from cadenza.codecs.music.midi import (as_tick, load_midi, merge_tracks_by_program, normalize_time_signature,
                                       sort_notes, write_midi)
from cadenza.codecs.music.segments import segment_values
from cadenza.codecs.music.vocab import MusicVocab
from cadenza.errors import DataError
from cadenza.io import write_text_atomic


class MusicCodec(MusicVocab):
    """MidiTok tokenizer plus Cadenza's conditioning tokens. Build with ``MusicCodec()``."""

    # ---- encode / decode -----------------------------------------------------------
    def normalize(self, score):
        """A copy of ``score`` in ticks, its metres written in supported form, and one track
        per instrument (tracks of one program merged, ordered by program, drums last), so
        the tokens depend only on the notes, not on how they were split into tracks."""
        import symusic

        if isinstance(score, (str, Path)):
            score = load_midi(score)
        score = merge_tracks_by_program(as_tick(score).copy())
        new = []
        for ts in score.time_signatures:
            norm = normalize_time_signature(ts.numerator, ts.denominator, self._ts_supported)
            if norm is None:
                continue
            new.append(symusic.TimeSignature(ts.time, norm[0], norm[1]))
        score.time_signatures.clear()
        for ts in new:
            score.time_signatures.append(ts)
        return score

    def describe(self, score, tempo: float | None = None) -> MusicFeatures:
        """``describe`` with this codec's metres and mood level edges."""
        return describe(self.normalize(score), self.config.valence_edges, self.config.energy_edges,
                        tempo_override=tempo)

    def quantize(self, score):
        """The score as the tokens see it: MidiTok's preprocessing of ``normalize(score)``.

        Onsets and durations snap to 1/positions_per_beat of a beat (beat = the metre's
        denominator), durations are capped at ``max_duration_beats`` beats, velocities snap
        to ``num_velocities`` bins, pitches outside ``pitch_range`` and duplicate notes
        (same onset, pitch and program) are dropped, tracks of one program are merged.
        """
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            q = self.tokenizer.preprocess_score(self.normalize(score))
        for t in q.tracks:  # canonical order of simultaneous notes: by pitch, on quantized values
            sort_notes(t)
        return q

    def remi_ids(self, score) -> list[int]:
        """MidiTok's REMI ids of the notes (every Bar with its TimeSig, every note with its
        Program and Velocity); ``encode_body`` makes the lean stream from them."""
        q = self.quantize(score)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            seq = self.tokenizer.encode(q, no_preprocess_score=True)
        if isinstance(seq, list):  # not expected with one_token_stream, but be safe
            seq = seq[0]
        return [int(i) for i in seq.ids]

    def _duration_quarters(self, i: int, den: int) -> float:
        a, b, r = self.value(i)
        return (a + b / r) * 4.0 / den

    def segment_raw_values(self, ids, qpm: float, ts0=(4, 4)) -> list[tuple[float, float]]:
        """(valence, energy) in [0, 1] of every segment of a REMI or lean body, from its notes."""
        S = self.config.segment_bars
        seg_notes: list[list] = []
        seg_quarters: list[float] = []
        ts = tuple(ts0)
        bar = -1
        pitch, vel = 0, 64
        for i in ids:
            kind = self.token_type(i)
            if kind == "Bar":
                bar += 1
                if bar % S == 0:
                    seg_notes.append([])
                    seg_quarters.append(0.0)
                seg_quarters[-1] += ts[0] * 4.0 / ts[1]
            elif kind == "TimeSig":
                new_ts = self.value(i)
                if bar >= 0 and new_ts != ts:
                    seg_quarters[-1] += (new_ts[0] / new_ts[1] - ts[0] / ts[1]) * 4.0
                ts = new_ts
            elif kind in ("Pitch", "PitchDrum"):
                pitch = self.value(i) if kind == "Pitch" else -1
            elif kind == "Velocity":
                vel = self.value(i)
            elif kind == "Duration" and bar >= 0 and pitch >= 0:
                seg_notes[-1].append((pitch, self._duration_quarters(i, ts[1]), vel))
        spq = 60.0 / float(qpm)
        return [segment_values(n, q * spq) for n, q in zip(seg_notes, seg_quarters)]

    def lean_body(self, remi, ts0, levels=None) -> tuple[list[int], list[int]]:
        """The version-2 stream from REMI ids: a TimeSig only where the metre changes, a
        Program only where the instrument changes, a Velocity only where it changes, and
        every ``segment_bars`` bars the segment's control token (``levels``: (valence,
        energy) level per segment; 0 where not given). Returns (ids, index of each segment's
        control token)."""
        S = self.config.segment_bars
        cur_ts, cur_prog, cur_vel = self.time_signature_id(*ts0), None, None
        out: list[int] = []
        where: list[int] = []
        bar = -1
        pending = False

        def controls():
            k = len(where)
            v, e = levels[k] if levels is not None and k < len(levels) else (0, 0)
            where.append(len(out))
            out.append(self.mood_id(int(v), int(e)))

        for i in remi:
            kind = self.token_type(i)
            if kind == "Bar":
                if pending:
                    controls()
                bar += 1
                out.append(i)
                pending = bar % S == 0
                continue
            if kind == "TimeSig":
                if i != cur_ts:
                    out.append(i)
                    cur_ts = i
                continue
            if pending:
                controls()
                pending = False
            if kind == "Program":
                if i != cur_prog:
                    out.append(i)
                    cur_prog = i
            elif kind == "Velocity":
                if i != cur_vel:
                    out.append(i)
                    cur_vel = i
            else:
                out.append(i)
        if pending:
            controls()
        return out, where

    def expand_body(self, lean, ts0, program: int | None = None, velocity: int | None = None) -> list[int]:
        """MidiTok REMI ids from a version-2 body (the inverse of ``lean_body``). ``program``
        and ``velocity`` (token ids) are the ones in force where ``lean`` starts, for a body
        cut from the middle of a stream (default: Program_0 and the middle velocity)."""
        cur_ts = self.time_signature_id(*ts0)
        cur_prog = self.id("Program_0") if program is None else int(program)
        vels = self.ids_of_type("Velocity")
        cur_vel = vels[len(vels) // 2] if velocity is None else int(velocity)
        out: list[int] = []
        need_ts = need_vel = False
        prev = None
        for i in lean:
            kind = self.token_type(i)
            if kind == "Mood":
                continue
            if need_ts:
                if kind == "TimeSig":
                    cur_ts = i
                out.append(cur_ts)
                need_ts = False
                if kind == "TimeSig":
                    prev = kind
                    continue
            if kind == "TimeSig":   # a metre change not right after a bar line: keep as MidiTok would
                cur_ts = i
            if kind == "Bar":
                need_ts = True
            elif kind == "Program":
                cur_prog = i
            elif kind in ("Pitch", "PitchDrum"):
                if prev != "Program":
                    out.append(cur_prog)
                need_vel = True
            elif kind == "Velocity":
                cur_vel = i
                need_vel = False
            elif kind == "Duration" and need_vel:
                out.append(cur_vel)
                need_vel = False
            out.append(i)
            prev = kind
        if need_ts:
            out.append(cur_ts)
        return out

    def encode_parts(self, score, style: str = "other", features: MusicFeatures | None = None,
                     tempo: float | None = None) -> tuple[np.ndarray, list[int], list[tuple[float, float]]]:
        """(ids, index of every segment's control token, raw (valence, energy) per segment).

        The levels in ``ids`` use this codec's edges; ``cadenza data`` re-cuts them at the
        corpus quantiles from the raw values."""
        if isinstance(score, (str, Path)):
            score = load_midi(score)
        self.style_id(style)
        score = as_tick(score)
        remi = self.remi_ids(score)
        if features is None:
            features = self.describe(score, tempo=tempo)
        ts_ids = set(self.ids_of_type("TimeSig"))
        first_ts = next((i for i in remi if i in ts_ids), None)
        if first_ts is not None:
            features = dataclasses.replace(features, time_signature=self.value(first_ts))
        prefix = self.prefix(features, style)
        qpm = self.tempo_bin(features.tempo)
        raw = self.segment_raw_values(remi, qpm, features.time_signature)
        levels = [(level_of(v, self.config.valence_edges), level_of(e, self.config.energy_edges)) for v, e in raw]
        body, where = self.lean_body(remi, features.time_signature, levels)
        ids = prefix + body + [self.eos_id]
        return np.asarray(ids, dtype=np.int32), [w + len(prefix) for w in where], raw

    def encode(self, score, style: str = "other", features: MusicFeatures | None = None,
               tempo: float | None = None) -> np.ndarray:
        """BOS, conditioning prefix, lean body with segment controls, EOS as an int32 array.

        ``score`` may be a symusic score or a MIDI path. ``tempo`` overrides the file's
        tempo (for sources whose tempo is unknown).
        """
        return self.encode_parts(score, style, features, tempo)[0]

    def split_sequence(self, ids) -> tuple[dict, list[int]]:
        """(prefix values, MidiTok REMI body ids): strips BOS, prefix, controls, EOS and
        anything after it, and re-inserts what the lean stream leaves out."""
        ids = [int(i) for i in np.asarray(ids).reshape(-1)]
        cond, start = self.parse_prefix(ids)
        body = []
        for i in ids[start:]:
            if i == self.eos_id:
                break
            if 0 <= i < self.vocab_size and i not in (self.pad_id, self.bos_id):
                body.append(i)
        return cond, self.expand_body(body, cond.get("time_signature", (4, 4)))

    def decode(self, ids, tempo: float | None = None):
        """Token ids -> symusic score (ticks). The tempo comes from the prefix unless given."""
        import symusic

        cond, body = self.split_sequence(ids)
        body = [i for i in body if i < self.base_vocab_size]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            score = self.tokenizer.decode(body) if body else symusic.Score(self.tokenizer.time_division)
        qpm = float(tempo if tempo is not None else cond.get("tempo", DEFAULT_TEMPO))
        score.tempos.clear()
        score.tempos.append(symusic.Tempo(0, qpm=qpm))
        if "key" in cond:
            tonic, mode = parse_key(cond["key"])
            sharps = _sharps_for(tonic, mode)
            score.key_signatures.clear()
            score.key_signatures.append(symusic.KeySignature(0, sharps, 1 if mode == "minor" else 0))
        if len(score.time_signatures) == 0:
            n, d = cond.get("time_signature", (4, 4))
            score.time_signatures.append(symusic.TimeSignature(0, n, d))
        return score

    def decode_to_midi(self, ids, path, tempo: float | None = None) -> Path:
        """Decode and write a MIDI file atomically; returns the path."""
        return write_midi(self.decode(ids, tempo=tempo), path)

    # ---- persistence ----------------------------------------------------------------
    def vocab_hash(self) -> str:
        return hashlib.sha256("\n".join(self._id_to_token).encode()).hexdigest()[:16]

    def to_dict(self) -> dict:
        return {"codec": CODEC_NAME, "codec_version": CODEC_VERSION, "config": self.config.to_dict(),
                "vocab_size": self.vocab_size, "miditok_vocab_size": self.base_vocab_size,
                "vocab_sha256_16": self.vocab_hash(), "prefix": ["BOS", *PREFIX_SLOTS],
                "controls": list(CONTROL_SLOTS),
                "miditok": self.tokenizer.to_dict()}

    def save(self, path) -> Path:
        path = Path(path)
        write_text_atomic(path, json.dumps(self.to_dict(), indent=1))
        return path

    @classmethod
    def from_dict(cls, d: dict) -> "MusicCodec":
        if not isinstance(d, dict) or d.get("codec") != CODEC_NAME:
            raise DataError("the tokenizer file is not a Cadenza music tokenizer")
        if d.get("codec_version") != CODEC_VERSION:
            raise DataError(f"music tokenizer version {d.get('codec_version')} is not {CODEC_VERSION}: this model "
                            "or dataset was made by another Cadenza version; rebuild the dataset with "
                            "`cadenza data` and retrain, or use the Cadenza version that made it")
        codec = cls(MusicCodecConfig.from_dict(d["config"]))
        if codec.vocab_hash() != d.get("vocab_sha256_16") or codec.vocab_size != d.get("vocab_size"):
            raise DataError("the installed MidiTok builds a different vocabulary than the saved tokenizer; "
                            "install the MidiTok version named in the tokenizer file")
        return codec

    @classmethod
    def load(cls, path) -> "MusicCodec":
        p = Path(path)
        if p.is_dir():
            p = p / "tokenizer.json"
        try:
            d = json.loads(p.read_text())
        except FileNotFoundError:
            raise DataError(f"{p} does not exist") from None
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise DataError(f"{p} is corrupt (not valid JSON)") from None
        return cls.from_dict(d)


def _sharps_for(tonic: int, mode: str) -> int:
    major = tonic if mode == "major" else (tonic + 3) % 12
    sharps = (major * 7) % 12  # circle of fifths position
    return sharps - 12 if sharps > 6 else sharps
