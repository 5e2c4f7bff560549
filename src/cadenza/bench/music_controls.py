"""Controls followed (issue 10): does a music model keep the key, energy and valence it is given?

Over ``--seeds`` seeds, ``cadenza.music.eval.controls.run_checks`` composes ``--bars``-bar
pieces the way ``compose`` does by default (grammar, top-p 0.95, int8 decoding) with:

- a forced key (C, G, D, F, Am, Em, Dm in turn; tempo, metre and moods left to the model):
  target >= 90% of notes in the key's scale (mean over seeds);
- energy 0.1 vs 0.9 (same seeds, valence free): target >= 2x the notes per bar;
- valence 0.1 vs 0.9 (same seeds, energy free): target a higher share of major thirds;
- a switch mid-piece (bar 9 of 16): energy 0.1 -> 0.9 and 0.9 -> 0.1, valence 0.1 -> 0.9;
  target: the change shows from the segment after the switch (bars 9-16 vs 1-8; for
  energy >= 1.5x the notes per bar).

The baseline, measured in the same run: a piece per seed with nothing forced (its share of
notes in the key forced for that seed, its notes per bar and major-third share). It also
checks that every piece's Mood tokens are the forced levels. With ``--data DIR`` (a music
dataset folder) it also measures the corpus's own test segments by their Mood levels: what
a model that follows the corpus would reach (``control_measures.corpus_reference``). See
``cadenza.music.eval.control_measures`` for the exact measures (notes by onset bar; thirds above
the bass and between melody steps).

    python benchmarks/music_controls.py --model models/cadenza-music-v3 --seeds 20 --bars 16 \\
        --data data/music21

``--model`` is a model folder or a training run folder with ``model/`` in it; a folder without
tokenizer.json needs ``--tokenizer FILE``. Prints a table and the targets; writes
``--out``.json (the command, the weights' digest, every per-seed number) and ``--out``.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from cadenza import __version__
from cadenza.errors import CadenzaError, ConfigError
from cadenza.io import save_figure, write_text_atomic
from cadenza.bench.results import RESULTS

DEFAULT_OUT = RESULTS / "music_controls"


def model_folder(path: str | None) -> Path:
    """A model folder from a model folder or a run folder (default: the default model)."""
    from cadenza.music.registry import default_model_dir

    if path is None:
        return default_model_dir()
    d = Path(path)
    if not (d / "config.json").is_file() and (d / "model" / "config.json").is_file():
        d = d / "model"
    if not (d / "config.json").is_file():
        raise ConfigError(f"{path} is neither a model folder (model.safetensors, config.json) nor a run folder "
                          f"with model/ in it")
    return d


def with_tokenizer(model_dir: Path, tokenizer: str | None, work: Path) -> Path:
    """The folder to load: ``model_dir`` itself, or a copy of its files next to ``tokenizer``
    (a copy, not links, so a training run that replaces its model mid-benchmark changes nothing)."""
    if tokenizer is None:
        if not (model_dir / "tokenizer.json").is_file():
            raise ConfigError(f"{model_dir} has no tokenizer.json; pass the one it was trained with as "
                              f"--tokenizer FILE (the dataset's tokenizer.json)")
        return model_dir
    tok = Path(tokenizer)
    if not tok.is_file():
        raise ConfigError(f"--tokenizer {tokenizer}: no such file")
    d = work / "model"
    d.mkdir()
    for f in model_dir.iterdir():
        if f.is_file() and f.name != "tokenizer.json":
            shutil.copy2(f, d / f.name)
    shutil.copy2(tok, d / "tokenizer.json")
    return d


def f2(x, digits=2):
    return "–" if x is None else f"{x:.{digits}f}"


def pct(x):
    return "–" if x is None else f"{100 * x:.0f}%"


def table(res: dict) -> str:
    """Per-seed numbers, then means over seeds."""
    P = res["pieces"]
    seeds = res["settings"]["seeds"]
    sw = res["settings"]["switch_bar"]
    bars = res["settings"]["bars"]
    head = (f"{'seed':>4} {'key':>3} {'in key':>6} {'free':>4} | {'notes/bar E lo':>14} {'E hi':>5} {'hi/lo':>5} | "
            f"{'maj3 V lo':>9} {'V hi':>4} | {'E up: 1-' + str(sw - 1):>10} {str(sw) + '-' + str(bars):>5} | "
            f"{'E down: 1-' + str(sw - 1):>12} {str(sw) + '-' + str(bars):>5} | "
            f"{'V up maj3: 1-' + str(sw - 1):>15} {str(sw) + '-' + str(bars):>5} | {'moods':>5}")
    lines = [head, "-" * len(head)]

    def row(case, i):
        return P[case][i]

    for i, seed in enumerate(seeds):
        k = row("key", i)
        lo, hi = row("energy_low", i), row("energy_high", i)
        vl, vh = row("valence_low", i), row("valence_high", i)
        up, dn, vu = row("switch_energy_up", i), row("switch_energy_down", i), row("switch_valence_up", i)
        r = None if not lo["notes_per_bar"] else hi["notes_per_bar"] / lo["notes_per_bar"]
        ok = sum(P[c][i]["moods_follow"] for c in P)
        lines.append(
            f"{seed:>4} {k['key']:>3} {pct(k['key_share']):>6} {pct(row('free', i)['key_share']):>4} | {f2(lo['notes_per_bar'], 1):>14} "
            f"{f2(hi['notes_per_bar'], 1):>5} {f2(r):>5} | {pct(vl['major_third_share']):>9} "
            f"{pct(vh['major_third_share']):>4} | {f2(up['notes_per_bar_before'], 1):>10} "
            f"{f2(up['notes_per_bar_after'], 1):>5} | {f2(dn['notes_per_bar_before'], 1):>12} "
            f"{f2(dn['notes_per_bar_after'], 1):>5} | {pct(vu['major_third_share_before']):>15} "
            f"{pct(vu['major_third_share_after']):>5} | {ok:>3}/{len(P)}")
    s = res["summary"]
    lines.append("-" * len(head))
    lines.append(
        f"{'mean':>4} {'':>3} {pct(s['key_share_mean']):>6} {pct(s['free_key_share_mean']):>4} | {f2(s['energy_low_notes_per_bar_mean'], 1):>14} "
        f"{f2(s['energy_high_notes_per_bar_mean'], 1):>5} {f2(s['energy_ratio']):>5} | "
        f"{pct(s['valence_low_major_third_share_mean']):>9} {pct(s['valence_high_major_third_share_mean']):>4} | "
        f"{f2(s['switch_energy_up_notes_per_bar_before_mean'], 1):>10} "
        f"{f2(s['switch_energy_up_notes_per_bar_after_mean'], 1):>5} | "
        f"{f2(s['switch_energy_down_notes_per_bar_before_mean'], 1):>12} "
        f"{f2(s['switch_energy_down_notes_per_bar_after_mean'], 1):>5} | "
        f"{pct(s['switch_valence_up_major_third_share_before_mean']):>15} "
        f"{pct(s['switch_valence_up_major_third_share_after_mean']):>5} | {s['moods_follow']:>5}")
    by_key = ", ".join(f"{k} {pct(v)}" for k, v in s["key_share_by_key"].items())
    lines.append(f"in key by key: {by_key}; median of per-seed energy ratios {f2(s['energy_ratio_median_per_seed'])}; "
                 f"segments either side of the switch (bars {max(1, sw - 4)}-{sw - 1} vs {sw}-{sw + 3}): "
                 f"energy up {f2(s['switch_energy_up_segment_ratio'])}x, down "
                 f"{f2(s['switch_energy_down_segment_ratio'])}x")
    lines.append(f"free = the baseline, nothing forced (same seeds): its notes in the key forced for that seed; "
                 f"{f2(s['free_notes_per_bar_mean'], 1)} notes per bar, "
                 f"{pct(s['free_major_third_share_mean'])} major thirds")
    return "\n".join(lines)


def plot(res: dict, path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from cadenza.music.eval.controls import ENERGY_TARGET, KEY_TARGET

    P, st = res["pieces"], res["settings"]

    def vals(case, k):
        return [r[k] for r in P[case] if r.get(k) is not None]

    fig, ax = plt.subplots(2, 3, figsize=(15, 8.5))
    a = ax[0, 0]
    a.boxplot([vals("energy_low", "notes_per_bar"), vals("energy_high", "notes_per_bar"),
               vals("free", "notes_per_bar")])
    a.set_xticks([1, 2, 3], [f"energy {st['low']}", f"energy {st['high']}", "nothing forced"])
    ref = res.get("corpus_reference")
    if ref and ref["energy"]:
        e = ref["energy"]
        a.scatter([1, 2], [e[min(e)], e[max(e)]], marker="D", color="C2", zorder=3,
                  label=f"corpus test segments, energy level {min(e)} / {max(e)}")
    lo_mean = res["summary"]["energy_low_notes_per_bar_mean"]
    if lo_mean:
        a.axhline(ENERGY_TARGET * lo_mean, color="k", ls="--", lw=1,
                  label=f"target: {ENERGY_TARGET:g}x the low-energy mean")
    if a.get_legend_handles_labels()[0]:
        a.legend(fontsize=8)
    a.set_ylabel("notes per bar")
    a.set_title("forced energy, same seeds")
    a = ax[0, 1]
    a.boxplot([vals("valence_low", "major_third_share"), vals("valence_high", "major_third_share"),
               vals("free", "major_third_share")])
    a.set_xticks([1, 2, 3], [f"valence {st['low']}", f"valence {st['high']}", "nothing forced"])
    if ref and ref["valence"]:
        v = ref["valence"]
        a.scatter([1, 2], [v[min(v)], v[max(v)]], marker="D", color="C2", zorder=3,
                  label=f"corpus test segments, valence level {min(v)} / {max(v)}")
        a.legend(fontsize=8)
    a.set_ylabel("major thirds / all thirds")
    a.set_ylim(-0.02, 1.02)
    a.set_title("forced valence, same seeds")
    a = ax[0, 2]
    keys = list(dict.fromkeys(r["key"] for r in P["key"]))
    for i, k in enumerate(keys):
        ys = [r["key_share"] for r in P["key"] if r["key"] == k and r["key_share"] is not None]
        a.scatter([i] * len(ys), ys, color="C0", alpha=0.7)
        if ys:
            a.plot([i - 0.3, i + 0.3], [statistics.fmean(ys)] * 2, color="C1", lw=2)
        fs = [r["key_share"] for r in P["free"] if r["key"] == k and r["key_share"] is not None]
        a.scatter([i + 0.15] * len(fs), fs, color="grey", marker="x", alpha=0.7,
                  label="nothing forced (baseline)" if i == 0 else None)
    a.axhline(KEY_TARGET, color="k", ls="--", lw=1, label=f"target {KEY_TARGET:.0%}")
    a.set_xticks(range(len(keys)), keys)
    a.set_ylabel("share of notes in the key's scale")
    a.set_title("forced key (dots: seeds, bars: means)")
    a.set_ylim(min(0.5, a.get_ylim()[0]), 1.02)
    a.legend(fontsize=8)
    a = ax[1, 0]
    bars = st["bars"]
    x = np.arange(1, bars + 1)
    for case, label, c in (("switch_energy_up", f"energy {st['low']} -> {st['high']}", "C0"),
                           ("switch_energy_down", f"energy {st['high']} -> {st['low']}", "C3")):
        m = np.mean([r["bar_counts"] for r in P[case]], axis=0)
        a.plot(x, m, "o-", color=c, label=label)
    a.axvline(st["switch_bar"] - 0.5, color="k", ls=":", lw=1, label=f"switch at bar {st['switch_bar']}")
    a.set_xlabel("bar")
    a.set_ylabel("notes per bar (mean over seeds)")
    a.set_title("energy switched mid-piece")
    a.legend(fontsize=8)
    a = ax[1, 1]
    S = st["segment_bars"]
    seg = [[r["segment_major_third_share"][j] for r in P["switch_valence_up"]
            if r["segment_major_third_share"][j] is not None]
           for j in range(len(P["switch_valence_up"][0]["segment_major_third_share"]))]
    a.plot(range(len(seg)), [statistics.fmean(v) if v else np.nan for v in seg], "o-",
           color="C2", label=f"valence {st['low']} -> {st['high']}")
    a.axvline((st["switch_bar"] - 1) / S - 0.5, color="k", ls=":", lw=1, label=f"switch at bar {st['switch_bar']}")
    a.set_xticks(range(len(seg)), [f"bars {1 + j * S}-{min(bars, (j + 1) * S)}" for j in range(len(seg))])
    a.set_xlabel("segment")
    a.set_ylabel("major-third share (mean over seeds)")
    a.set_ylim(-0.02, 1.02)
    a.set_title("valence switched mid-piece")
    a.legend(fontsize=8)
    a = ax[1, 2]
    a.axis("off")
    text = "\n".join(f"{'met' if t['met'] else 'NOT met'}: {t['target']}\n        {t['value']}"
                     for t in res["targets"])
    a.text(0, 1, text, va="top", ha="left", fontsize=7.5, family="monospace", wrap=True)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)


def corpus(args) -> dict | None:
    """The corpus reference from ``--data`` (None without it)."""
    if args.data is None:
        return None
    from cadenza.codecs.music import MusicCodec
    from cadenza.music.eval.control_measures import corpus_reference
    from cadenza.music.eval.scoring import load_pieces, select_pieces

    d = Path(args.data)
    if not (d / "tokenizer.json").is_file():
        raise ConfigError(f"--data {args.data}: no tokenizer.json there; give a music dataset folder")
    pieces = load_pieces(d, "test")
    pieces = [pieces[i] for i in select_pieces(len(pieces), args.corpus_pieces, seed=0)]
    ref = corpus_reference(MusicCodec.load(d / "tokenizer.json"), pieces)
    ref["pieces"] = len(pieces)
    return ref


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="model folder or run folder with model/ (default: the default model)")
    p.add_argument("--tokenizer", help="tokenizer.json to use when the model folder has none")
    p.add_argument("--seeds", type=int, default=20, help="seeds (default 20: seeds 0..19)")
    p.add_argument("--bars", type=int, default=16, help="bars per piece (default 16; at least two segments)")
    p.add_argument("--style", default=None, help="style of every piece (default: the model chooses)")
    p.add_argument("--data", help="music dataset folder: also measure its test segments by Mood level")
    p.add_argument("--corpus-pieces", type=int, default=300,
                   help="test pieces for the corpus reference (default 300, drawn with seed 0)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as the CLI)")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="output path without extension (.json and .png)")
    args = p.parse_args(argv)
    if args.seeds < 1:
        p.error("--seeds must be at least 1")
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="cadenza-controls-"))
    try:
        return run(args, argv, work)
    except CadenzaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(args, argv, work: Path) -> int:
    from cadenza.music.eval.controls import run_checks
    from cadenza.music.load import load_model

    model_dir = model_folder(args.model)
    mm = load_model(with_tokenizer(model_dir, args.tokenizer, work))
    cfg = mm.network.config
    print(f"control checks: model {model_dir} ({mm.digest}, {mm.network.num_params() / 1e6:.2f}M parameters, "
          f"context {cfg.max_len}), {mm.network.decode_weights} decoding; {args.seeds} seeds x 9 pieces of "
          f"{args.bars} bars; {args.threads} thread(s); load average {os.getloadavg()[0]:.1f}", flush=True)
    ref = corpus(args)
    t0 = time.perf_counter()
    res = run_checks(mm, list(range(args.seeds)), bars=args.bars, style=args.style, progress=True)
    elapsed = time.perf_counter() - t0
    print()
    print(table(res))
    if ref is not None and ref["energy"] and ref["valence"]:
        e, v = ref["energy"], ref["valence"]
        lo, hi = min(e), max(e)
        print(f"corpus reference ({ref['segments']} segments of {ref['pieces']} test pieces of {args.data}): "
              f"notes per bar at energy level {lo} / {hi}: {f2(e[lo], 1)} / {f2(e[hi], 1)} "
              f"({f2(e[hi] / e[lo] if e[lo] else None)}x); major-third share at valence level "
              f"{min(v)} / {max(v)}: {pct(v[min(v)])} / {pct(v[max(v)])}")
    if ref is not None:
        res["corpus_reference"] = ref
    print()
    for t in res["targets"]:
        print(f"  target: {t['target']}: {t['value']} ({'met' if t['met'] else 'NOT met'})")
    command = "python benchmarks/music_controls.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    payload = {
        "benchmark": "music_controls", "command": command, "cadenza_version": __version__,
        "torch": torch.__version__, "host": platform.node(), "cpu": platform.processor() or platform.machine(),
        "threads": args.threads, "elapsed_s": round(elapsed, 1),
        "model": {"path": str(model_dir), "tokenizer": args.tokenizer, "name": model_dir.resolve().name
                  if model_dir.name != "model" else model_dir.resolve().parent.name,
                  "digest": mm.digest, "parameters": mm.network.num_params(), "config": cfg.to_dict()},
        **res,
    }
    out = Path(args.out)
    json_path, png_path = out.with_name(out.name + ".json"), out.with_name(out.name + ".png")
    write_text_atomic(json_path, json.dumps(payload, indent=2, default=str) + "\n")
    plot(res, png_path, f"controls followed: {payload['model']['name']}@{mm.digest}, {args.seeds} seeds, "
                        f"{args.bars} bars, {mm.network.decode_weights} decoding\n{command}")
    print(f"\nwrote {json_path} and {png_path} ({elapsed:.0f} s)")
    return 0
