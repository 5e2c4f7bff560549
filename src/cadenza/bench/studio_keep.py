"""Does the studio keep the person's music? And does the stream's mood reach its tempo?

On held-out melodies (the top line of the first 4 bars of ``--pieces`` test pieces, played by
the "person" into a ``StudioSession`` in the piece's key):

- **Infill keeps your notes**: bars 2-3 infilled (k = 4) and accepted, with ``keep="none"``
  (the studio before: the bars rewritten), ``keep="person"`` (now the default) and
  ``keep="all"`` with the bass role; the share of the person's notes in those bars still
  there after Accept, and the model's notes added.
- **Harmonize covers the piece**: the person's bars 1-2 and the model's continuation (2 bars),
  harmonized: the bars with notes that get voices (the studio before harmonized the person's
  bars only).
- **Predictions after Harmonize**: 3 voices under the melody, accepted; the five predicted
  pitches read from the whole piece (the studio before) and from the followed voice (now);
  their mean pitch and the share within the melody's register (no lower than its lowest note
  minus 5 semitones).
- **The Key selector**: the five predictions of an empty piece in each of 21 keys (in the
  key's scale: major, or natural minor with the raised 7th); and of a piece of one C4 whose
  key is then changed to each of the 15 keys holding C, without (the studio before: the
  change did not reach the model once the piece had notes) and with ``set_key``.

And on the endless stream (no data needed): with the tempo on auto, the tempo of the first bar
of each section, for every energy level in turn (restarted, as a pad move does), per style.

    python benchmarks/studio_keep.py                 # needs data/music21 (cadenza data music21)
    python benchmarks/studio_keep.py --pieces 6

Writes benchmarks/results/studio_keep.json.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
from pathlib import Path

import torch

from cadenza.bench.results import RESULTS, missing_test_split, run_header
from cadenza.io import write_text_atomic

MAJOR_KEYS = ["C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"]
MINOR_KEYS = ["Am", "Em", "Bm", "F#m", "C#m", "Dm", "Gm", "Cm", "Fm"]


def melodies(mm, data: str, n: int) -> list[tuple[dict, list[dict]]]:
    """(session settings, the top line of the first 4 bars as person notes) of held-out pieces."""
    from cadenza.bench.studio import held_out
    from cadenza.music.studio_notes import SNote, line

    out = []
    for settings, notes in held_out(mm, data, 4 * n):
        bar = settings_bar(settings)
        top = line([SNote(id=i, **{k: n[k] for k in ("pitch", "start", "duration", "velocity", "program")})
                    for i, n in enumerate(notes) if n["start"] < 4 * bar])
        person = [{"pitch": x.pitch, "start": x.start, "duration": min(x.duration, 4 * bar - x.start),
                   "velocity": x.velocity, "program": 0} for x in top]
        if len([x for x in person if bar <= x["start"] < 3 * bar]) >= 4:
            out.append((settings, person))
        if len(out) == n:
            break
    return out


def settings_bar(settings: dict) -> float:
    num, den = (int(x) for x in settings["time_signature"].split("/"))
    return num * 4 / den


def session(mm, settings: dict, notes: list[dict]):
    from cadenza.music.studio import StudioSession

    s = StudioSession(mm, tempo=min(240.0, max(30.0, settings["tempo"])), time_signature=settings["time_signature"],
                      key=settings["key"], style=settings["style"])
    if notes:
        s.play(notes)
    return s


def in_scale(pitches, key: str) -> int:
    from cadenza.codecs.music import parse_key
    from cadenza.music.modes import scale_of

    sc = scale_of(*parse_key(key))
    return sum(p % 12 in sc for p in pitches)


def keep_run(mm, pieces) -> dict:
    from cadenza.music.constraints import Constraints

    out = {}
    for keep, role in (("none", None), ("person", None), ("all", "bass")):
        kept = total = added = 0
        for j, (settings, notes) in enumerate(pieces):
            s = session(mm, settings, notes)
            bar = s.bar_beats
            mine = {i: n.to_dict() for i, n in s.notes.items() if bar <= n.start < 3 * bar}
            g = s.suggest("infill", from_bar=1, to_bar=3, k=4, seed=j, keep=keep, constraints=Constraints(role=role))
            s.accept(g.id)
            kept += sum(1 for i, n in mine.items() if i in s.notes and s.notes[i].to_dict() == n)
            total += len(mine)
            added += len(g.notes)
        out[keep + (f", role={role}" if role else "")] = {
            "person_notes_in_bars": total, "kept_after_accept": kept, "kept_share": kept / total,
            "model_notes_added": added}
    return out


def harmonize_run(mm, pieces) -> dict:
    from cadenza.music.grammar import RemiState
    from cadenza.music.predict import pitch_distribution_after, with_memory

    def whole_piece(s):           # the studio's predictions before: the next note of every note's stream
        ids = s.tokens()
        state = RemiState(s.remi, record=True).feed_all(ids)
        with torch.inference_mode():
            d = with_memory(s.remi, pitch_distribution_after(mm.network, s.remi, ids, state), state)
        return [p for p, _ in sorted(d.items(), key=lambda kv: -kv[1])[:5]]

    rows = {"before_harmonize": [], "whole_piece": [], "followed_voice": []}
    lows = []
    for j, (settings, notes) in enumerate(pieces):
        s = session(mm, settings, notes)
        rows["before_harmonize"].append([p["pitch"] for p in s.predictions()])
        s.accept(s.suggest("harmonize", voices=3, seed=j).id)
        rows["whole_piece"].append(whole_piece(s))
        rows["followed_voice"].append([p["pitch"] for p in s.predictions()])
        lows.append(min(n["pitch"] for n in notes))
    covered = bars = 0            # the person plays bars 1-2, the model's continuation is bars 3-4
    for j, (settings, notes) in enumerate(pieces):
        s = session(mm, settings, [n for n in notes if n["start"] < 2 * settings_bar(settings)])
        s.accept(s.suggest("continue", bars=2, seed=j).id)
        g = s.suggest("harmonize", voices=3, seed=j)
        mel = {int(n.start // s.bar_beats) for n in s.notes.values()}
        covered += len(mel & {int(n.start // s.bar_beats) for n in g.notes})
        bars += len(mel)
    out = {"coverage": {"bars_with_melody": bars, "bars_harmonized": covered}}
    for name, preds in rows.items():
        flat = [p for row in preds for p in row]
        inside = sum(p >= lo - 5 for row, lo in zip(preds, lows) for p in row)
        out[name] = {"mean_pitch": statistics.mean(flat), "in_register": inside, "of": len(flat)}
    return out


def key_run(mm) -> dict:
    from cadenza.music.studio import StudioSession

    n = tot = 0
    for key in MAJOR_KEYS + MINOR_KEYS:
        p = [x["pitch"] for x in StudioSession(mm, key=key).predictions()]
        n += in_scale(p, key)
        tot += len(p)
    empty = {"keys": len(MAJOR_KEYS + MINOR_KEYS), "in_key": n, "of": tot}
    from cadenza.codecs.music import parse_key
    from cadenza.music.modes import scale_of

    holding = [k for k in MAJOR_KEYS + ["Cm", "C#m", "Dm", "Ebm", "Em", "Fm", "F#m", "Gm", "G#m", "Am", "Bbm", "Bm"]
               if 0 in scale_of(*parse_key(k))]
    changed = {"unchanged": [0, 0], "set_key": [0, 0]}
    for key in holding:
        for how in changed:
            s = StudioSession(mm, key="C")
            s.play([{"pitch": 60, "start": 0.0, "duration": 1.0}])
            if how == "set_key":
                s.set_key(key)
            p = [x["pitch"] for x in s.predictions()]
            changed[how][0] += in_scale(p, key)
            changed[how][1] += len(p)
    return {"empty_piece": empty, "one_note_then_key": {"keys": len(holding), **{
        k: {"in_key": a, "of": b} for k, (a, b) in changed.items()}}}


def tempo_run(mm, styles=("folk", "fiddle", "bach"), seeds=(1, 2, 3)) -> dict:
    from cadenza.music.soundtrack import Controls, Soundtrack

    levels = mm.codec.config.levels
    out = {}
    for style in styles:
        got: dict[int, list[float]] = {lev: [] for lev in range(levels)}
        for seed in seeds:
            st = Soundtrack(mm, Controls(style=style, energy=0.5), seed=seed)
            order = list(range(levels))
            random.Random(seed).shuffle(order)
            for lev in order + order[::-1]:
                st.set_controls(energy=(lev + 0.5) / levels)
                st.restart()
                got[lev].append(st.next_bar().tempo)
        out[style] = {str(lev): {"mean_bpm": statistics.mean(v), "min": min(v), "max": max(v), "sections": len(v)}
                      for lev, v in got.items()}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="data/music21")
    ap.add_argument("--model", default=None)
    ap.add_argument("--pieces", type=int, default=20)
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    from cadenza.music.load import load_model

    torch.set_num_threads(1)
    mm = load_model(args.model)
    if why := missing_test_split(args.data):
        print(f"benchmarks/studio_keep.py: error: {why}", file=sys.stderr)
        return 2
    pieces = melodies(mm, args.data, args.pieces)
    res = {**run_header("studio_keep"), "model": mm.name, "pieces": len(pieces),
           "infill": keep_run(mm, pieces), "harmonize": harmonize_run(mm, pieces), "key": key_run(mm),
           "tempo": tempo_run(mm)}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    path = Path(args.out) / "studio_keep.json"
    write_text_atomic(path, json.dumps(res, indent=2) + "\n")
    inf, har, key = res["infill"], res["harmonize"], res["key"]
    print(f"{len(pieces)} held-out melodies (4 bars), model {mm.name}")
    for k, v in inf.items():
        print(f"infill bars 2-3, keep={k}: {v['kept_after_accept']}/{v['person_notes_in_bars']} of the person's notes "
              f"there kept after Accept ({100 * v['kept_share']:.0f}%), {v['model_notes_added']} model notes added")
    cov = har.pop("coverage")
    print(f"harmonize after the person's bars 1-2 and the model's continuation: {cov['bars_harmonized']}/"
          f"{cov['bars_with_melody']} bars with notes get voices")
    for k, v in har.items():
        print(f"predictions, {k.replace('_', ' ')}: mean pitch {v['mean_pitch']:.1f}, "
              f"{v['in_register']}/{v['of']} in the melody's register")
    e, o = key["empty_piece"], key["one_note_then_key"]
    print(f"empty piece, {e['keys']} keys: {e['in_key']}/{e['of']} predictions in the key")
    for k in ("unchanged", "set_key"):
        print(f"one C4, then the Key set to each of {o['keys']} keys holding C ({k}): "
              f"{o[k]['in_key']}/{o[k]['of']} predictions in the key")
    for style, row in res["tempo"].items():
        print(f"tempo on auto, {style}: "
              + ", ".join(f"energy {lev} {v['mean_bpm']:.0f} bpm" for lev, v in row.items()))
    print(f"wrote {path}")
    return 0
