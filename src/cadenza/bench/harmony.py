"""Harmony (issue 28): harmonize the soprano of held-out Bach chorales and compare the voices
with Bach's own and with a rule-based baseline.

The chorales are the test split of the music21 ``bach`` collection as a corpus build splits
it (``cadenza.bench.chorales``: the build's converter, ``split_groups`` and ``split_of``;
four parts, soprano first), ``--pieces`` of them drawn with ``--seed``. For each, three rows
are measured the same way (``cadenza.music.eval.harmony``):

- ``bach``: Bach's alto, tenor and bass under his soprano;
- ``cadenza``: ``harmonize(mm, soprano, voices=3, style="bach", seed=S)``, the library call
  ``cadenza harmonize`` makes (int8 decode weights, top-p 0.95, temperature 1; the copy
  guard left out), seeds 1..``--seeds``;
- ``rules``: diatonic triads on strong beats (``cadenza.music.eval.triads``).

Measures: consonance with the melody at the added notes' onsets (with fourths separately),
chord-tone fit per beat, parallel fifths and octaves per 100 beats, crossings, spacing and
voice ranges, tonic endings (the key from the whole chorale, as the codec finds it), and
seconds per bar of ``harmonize`` (from the call to the Piece, median over pieces). The
model's bits per note on Bach's lower voices given the soprano are scored through the same
path (``harmony_bits``). A second check harmonizes three well-known tunes (a hymn, a
symphonic theme, an English air; ``cadenza.bench.tunes``) with seeds 1..3 and counts
consonance and notes above the melody.

Targets (issue 28): consonance >= 75%; parallels at most 2x Bach's rate; tonic endings
>= 90%; three tunes >= 75% consonant with none above the melody; 16 bars in <= 2 s.

    python benchmarks/harmony.py --pieces 12 --seeds 2
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from cadenza.bench.results import RESULTS, exit_code, finite, run_header, write_json_and_plot
from cadenza.errors import ConfigError
from cadenza.music.eval import harmony as hm
from cadenza.music.eval.triads import triad_baseline

ROWS = ("bach", "cadenza", "rules")
TARGET_CONSONANCE = 0.75
TARGET_TONIC = 0.90
TARGET_PARALLELS_X = 2.0
TARGET_16_BARS_S = 2.0


def melody_score(full, track: int = 0):
    """A score with only track ``track`` of ``full`` (its tempo, metres and key signatures)."""
    import symusic

    s = symusic.Score(full.ticks_per_quarter)
    for src, dst in ((full.tempos, s.tempos), (full.time_signatures, s.time_signatures),
                     (full.key_signatures, s.key_signatures)):
        for x in src:
            dst.append(x)
    s.tracks.append(full.tracks[track].copy())
    return s


def key_of(codec, score) -> tuple[int, str]:
    f = codec.describe(score)
    return int(f.key_tonic), str(f.key_mode)


def harmonize_timed(mm, melody, voices: int, style, seed: int, **kw):
    from cadenza.music.harmony import harmonize

    t0 = time.perf_counter()
    piece = harmonize(mm, melody, voices=voices, style=style, seed=seed, **kw)
    return piece, time.perf_counter() - t0


def chorale_rows(mm, full, seeds, voices: int, style, bits: bool, texture=None) -> dict:
    """The three rows' measures for one chorale (Cadenza: one per seed), its bits and times."""
    melody = melody_score(full)
    key = key_of(mm.codec, full)
    bach = hm.texture_of(full, key)
    out = {"key": f"{key[0]} {key[1]}", "bars": None, "bach": [hm.measure(bach, 3)], "cadenza": [], "seconds": [],
           "pieces": []}
    rules = hm.Texture(bach.melody, triad_baseline(bach, voices), bach.tpq, bach.sigs, key)
    out["rules"] = [hm.measure(rules, voices)]
    for s in seeds:
        piece, sec = harmonize_timed(mm, melody, voices, style, s, texture=texture)
        out["cadenza"].append(hm.measure(hm.texture_of(piece.score(), key), voices))
        out["seconds"].append(sec / max(1, piece.bars))
        out["bars"] = piece.bars
        out["pieces"].append(piece)
    if bits:
        from cadenza.music.harmony import harmony_bits

        out["bits"] = harmony_bits(mm, melody, full, voices=3, style=style, texture=texture)
    return out


def tune_rows(mm, voices: int, style, seeds=(1, 2, 3), texture=None) -> dict:
    """Consonance and notes above the melody on the three tunes, per tune and pooled."""
    from cadenza.bench.tunes import TUNES, tune_score

    from cadenza.codecs.music.features import parse_key

    per = {}
    all_rows = []
    for name, (key, _, _) in TUNES.items():
        score = tune_score(name)
        rows, secs = [], []
        for s in seeds:
            piece, sec = harmonize_timed(mm, score, voices, style, s, texture=texture)
            rows.append(hm.measure(hm.texture_of(piece.score(), parse_key(key)), voices))
            secs.append(sec)
        per[name] = {**hm.summarize(rows), "bars": piece.bars, "seconds": statistics.median(secs)}
        all_rows += rows
    return {"tunes": per, "all": hm.summarize(all_rows), "seeds": list(seeds)}


def targets(rows: dict, speed_16: float | None, tunes: dict | None) -> list[dict]:
    c, b = rows["cadenza"], rows["bach"]
    out = [{"figure": "consonance with the melody", "value": c["consonant"], "need": TARGET_CONSONANCE,
            "met": c["consonant"] is not None and c["consonant"] >= TARGET_CONSONANCE, "rule": ">= 75%"}]
    if b["parallels_per_100_beats"] is not None and c["parallels_per_100_beats"] is not None:
        need = TARGET_PARALLELS_X * b["parallels_per_100_beats"]
        out.append({"figure": "parallel fifths/octaves per 100 beats", "value": c["parallels_per_100_beats"],
                    "need": need, "met": c["parallels_per_100_beats"] <= need,
                    "rule": f"<= 2 x Bach ({b['parallels_per_100_beats']:.2f})"})
    out.append({"figure": "tonic endings", "value": c["tonic_endings"], "need": TARGET_TONIC,
                "met": c["tonic_endings"] is not None and c["tonic_endings"] >= TARGET_TONIC, "rule": ">= 90%"})
    if tunes is not None:
        t = tunes["all"]
        out.append({"figure": "three tunes: consonance", "value": t["consonant"], "need": TARGET_CONSONANCE,
                    "met": t["consonant"] is not None and t["consonant"] >= TARGET_CONSONANCE, "rule": ">= 75%"})
        out.append({"figure": "three tunes: notes above the melody", "value": t["above_melody"], "need": 0,
                    "met": t["above_melody"] == 0, "rule": "none"})
    if speed_16 is not None:
        out.append({"figure": "seconds for 16 bars", "value": speed_16, "need": TARGET_16_BARS_S,
                    "met": speed_16 <= TARGET_16_BARS_S, "rule": "<= 2 s (median s/bar x 16)"})
    return out


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _num(x, fmt=".2f") -> str:
    return "-" if x is None else format(x, fmt)


def table(result: dict) -> str:
    rows = result["rows"]
    lines = [f"{'row':<8} {'pieces':>6} {'added':>6} {'consonant':>9} {'+4ths':>7} {'above':>5} {'chord fit':>9} "
             f"{'par5/100b':>9} {'par8/100b':>9} {'cross/100':>9} {'spacing':>7} {'tonic end':>9}"]
    for name in ROWS:
        r = rows[name]
        lines.append(f"{name:<8} {r['pieces']:>6} {r['added_notes']:>6} {_pct(r['consonant']):>9} "
                     f"{_pct(r['consonant_or_fourth']):>7} {r['above_melody']:>5} {_pct(r['chord_fit']):>9} "
                     f"{_num(r['parallel_fifths_per_100_beats']):>9} {_num(r['parallel_octaves_per_100_beats']):>9} "
                     f"{_num(r['crossings_per_100_notes']):>9} {_pct(r['spacing_share']):>7} "
                     f"{_pct(r['tonic_endings']):>9}")
    lines.append("voice ranges (lowest voice first: low-high, median, outside the usual chorale range):")
    for name in ROWS:
        parts = [f"{v['low']}-{v['high']} med {_num(v['median'], '.0f')} out {_pct(v['outside_usual'])}"
                 for v in rows[name]["ranges"]]
        lines.append(f"  {name:<8} " + " | ".join(parts))
    if result.get("bits"):
        b = result["bits"]
        lines.append(f"bits per note on Bach's lower voices given the soprano (harmonize's path): "
                     f"{b['bits_per_note']:.3f} (without the policy {b['plain_bits_per_note']:.3f}; "
                     f"{b['notes']} notes, {b['outside']} tokens outside the policy)")
    sp = result["speed"]
    lines.append(f"harmonize: {sp['median_s_per_bar']:.4f} s per bar (median over pieces; "
                 f"{sp['s_per_16_bars']:.2f} s for 16 bars)")
    if result.get("tunes"):
        t = result["tunes"]
        per = ", ".join(f"{k} {_pct(v['consonant'])}" for k, v in t["tunes"].items())
        lines.append(f"three tunes (seeds {t['seeds']}): consonant {_pct(t['all']['consonant'])} "
                     f"(with fourths {_pct(t['all']['consonant_or_fourth'])}; {per}), "
                     f"{t['all']['above_melody']} notes above the melody, {t['all']['added_notes']} added notes")
        times = ", ".join(f"{k} {v['bars']} bars {v['seconds']:.2f} s" for k, v in t["tunes"].items())
        lines.append(f"three tunes, harmonize time (median over seeds): {times}")
    for t in result["targets"]:
        v = t["value"]
        shown = _pct(v) if t["figure"] in ("consonance with the melody", "tonic endings",
                                            "three tunes: consonance") else _num(v, ".2f" if isinstance(v, float)
                                                                                 else "d")
        lines.append(f"target: {t['figure']} {shown} {t['rule']}: {'met' if t['met'] else 'NOT met'}")
    return "\n".join(lines)


def plot(result: dict, roll: dict | None, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(13, 8))
    grid = fig.add_gridspec(2, 2, width_ratios=[1, 2.2])
    ax = fig.add_subplot(grid[:, 0])
    keys = (("consonant", "consonant\nwith melody"), ("consonant_or_fourth", "... or a\nfourth"),
            ("chord_fit", "beats that\nform a chord"), ("tonic_endings", "tonic\nendings"))
    x = np.arange(len(keys))
    for j, name in enumerate(ROWS):
        vals = [100 * (result["rows"][name][k] or 0) for k, _ in keys]
        ax.bar(x + (j - 1) * 0.27, vals, 0.27, label=name, color=f"C{j}")
    ax.set_xticks(x, [lab for _, lab in keys], fontsize=8)
    ax.set_ylabel("%")
    ax.set_ylim(0, 105)
    ax.axhline(100 * TARGET_CONSONANCE, color="grey", lw=0.8, ls="--")
    ax.legend(fontsize=8, loc="lower right")
    par = ", ".join(f"{n} {_num(result['rows'][n]['parallels_per_100_beats'])}" for n in ROWS)
    ax.set_title(f"held-out chorales ({result['rows']['bach']['pieces']})\nparallels /100 beats: {par}", fontsize=9)
    if roll:
        for i, (label, tex) in enumerate(roll["textures"]):
            a = fig.add_subplot(grid[i, 1])
            for line, colour, name in ((tex.added, "C1" if i else "C0", "lower voices"),
                                       (tex.melody, "k", "melody")):
                for on, en, p in zip(line.onset, line.end, line.pitch):
                    a.add_patch(plt.Rectangle((on / tex.tpq, p - 0.4), (en - on) / tex.tpq, 0.8, color=colour,
                                              alpha=0.8))
            lo = min(int(tex.added.pitch.min(initial=60)), int(tex.melody.pitch.min(initial=60)))
            hi = max(int(tex.added.pitch.max(initial=60)), int(tex.melody.pitch.max(initial=60)))
            end = max(float(tex.melody.end.max(initial=1)), float(tex.added.end.max(initial=1))) / tex.tpq
            a.set_xlim(0, end)
            a.set_ylim(lo - 2, hi + 2)
            a.set_ylabel("pitch")
            a.set_title(f"{roll['id']}: {label}", fontsize=9)
            a.grid(alpha=0.2)
        a.set_xlabel("quarter notes")
    fig.suptitle(f"harmony under held-out chorale sopranos; model {result['model']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(args) -> int:
    import torch
    from tqdm import tqdm

    from cadenza.bench.chorales import held_out_chorales, load_chorale, shipped_train_ids
    from cadenza.music.eval.scoring import select_pieces
    from cadenza.music.load import load_model

    if args.seeds < 1 or args.pieces < 1:
        raise ConfigError("--seeds and --pieces must be at least 1")
    torch.set_num_threads(args.threads)
    mm = load_model(args.model, decode_weights="float32" if args.exact else "int8")
    t0 = time.time()
    pool = held_out_chorales("test")
    chosen = [pool[i] for i in select_pieces(len(pool), args.pieces, args.seed)]
    train = shipped_train_ids(mm.path)
    leaked = [c.id for c in chosen if train is not None and c.id in train]
    if leaked:
        raise ConfigError(f"held-out chorales {leaked} are among the model's training pieces")
    seeds = list(range(1, args.seeds + 1))
    per, collected = [], {n: [] for n in ROWS}
    seconds, bits_rows, roll = [], [], None
    for ch in tqdm(chosen, desc="chorales", disable=args.no_progress, leave=False):
        full = load_chorale(ch)
        r = chorale_rows(mm, full, seeds, args.voices, args.style, bits=not args.no_bits, texture=args.texture)
        for n in ROWS:
            collected[n] += r[n]
        seconds.append(statistics.median(r["seconds"]))
        if "bits" in r:
            bits_rows.append(r["bits"])
        per.append({"id": ch.id, "key": r["key"], "bars": r["bars"], "s_per_bar": r["seconds"],
                    "bits": r.get("bits"), **{n: [m.to_dict() for m in r[n]] for n in ROWS}})
        if roll is None:
            key = key_of(mm.codec, full)
            roll = {"id": ch.id, "textures": [("Bach", hm.texture_of(full, key)),
                                              (f"Cadenza (seed {seeds[0]})",
                                               hm.texture_of(r["pieces"][0].score(), key))]}
    rows = {n: hm.summarize(collected[n]) for n in ROWS}
    bits = None
    if bits_rows:
        notes = sum(b["notes"] for b in bits_rows)
        bits = {"bits_per_note": sum(b["bits"] for b in bits_rows) / notes,
                "plain_bits_per_note": sum(b["plain_bits_per_note"] * b["notes"] for b in bits_rows) / notes,
                "notes": notes, "outside": sum(b["outside"] for b in bits_rows),
                "tokens": sum(b["tokens"] for b in bits_rows)}
    med = statistics.median(seconds) if seconds else None
    speed = {"median_s_per_bar": med, "s_per_16_bars": 16 * med if med is not None else None,
             "per_piece_s_per_bar": seconds}
    tunes = None if args.no_tunes else tune_rows(mm, args.voices, args.style, texture=args.texture)
    result = {**run_header("harmony"), "model": mm.provenance().get("name", str(args.model)),
              "model_path": str(mm.path), "decode_weights": "float32" if args.exact else "int8",
              "voices": args.voices, "style": args.style, "texture": args.texture or "the style's", "seeds": seeds, "held_out_pool": len(pool),
              "chorales": [c.id for c in chosen], "rows": rows, "bits": bits, "speed": speed, "tunes": tunes,
              "targets": targets(rows, speed["s_per_16_bars"], tunes), "seconds": round(time.time() - t0, 1),
              "pieces": per}
    print(table(result))
    json_path, png_path = write_json_and_plot(args.out, args.name, finite(result), lambda p: plot(result, roll, p))
    print(f"wrote {json_path} and {png_path}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="model folder (default: the default model)")
    p.add_argument("--pieces", type=int, default=12, help="held-out test-split chorales (default 12)")
    p.add_argument("--seeds", type=int, default=2, help="harmonize seeds 1..N per chorale (default 2)")
    p.add_argument("--seed", type=int, default=0, help="draws the chorales")
    p.add_argument("--voices", type=int, default=3, help="voices to add (default 3: alto, tenor, bass)")
    p.add_argument("--style", default="bach", help="style harmonize conditions on (default bach)")
    p.add_argument("--texture", choices=("chorale", "polyphony", "chords", "free"),
                   help="harmonize's texture (default: the style's; free: the plain policy without rules, as "
                        "before issue 28)")
    p.add_argument("--exact", action="store_true", help="float32 decoding instead of the CLI's int8 default")
    p.add_argument("--no-bits", action="store_true", help="skip the bits per note on Bach's voices")
    p.add_argument("--no-tunes", action="store_true", help="skip the three-tune check")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--out", default=str(RESULTS), help="folder for NAME.json and NAME.png")
    p.add_argument("--name", default="harmony", help="file stem (default harmony)")
    args = p.parse_args(argv)
    return exit_code(run, args)
