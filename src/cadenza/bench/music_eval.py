"""Held-out evaluation of music models (issue 6): one table for the model card and README.

On held-out pieces of a music dataset (whole pieces, each scored from its BOS), for every
model given with ``--model LABEL=DIR`` and for an n-gram baseline trained on the train split:

- bits per token, bits per note (total bits / Pitch targets), next-note top-1 / top-5 pitch
  accuracy, with the model's full context (its max_len; longer pieces: sliding window);
- the same at each ``--contexts`` size (at most C tokens of context: what longer context buys),
  for all targets and for the targets at positions >= 1024, where the sizes differ most;
- held-out loss against training time from each model's run (``metrics.jsonl``), compared at
  equal wall-clock time;
- MusPy metrics of pieces sampled from each model (conditioning prefixes taken from held-out
  pieces, stop at EOS or ``--max-new-tokens``) against the same held-out pieces cut to the
  same token budget: mean +- std.

See ``cadenza.music.eval`` for the exact definitions; ``cadenza.music.eval.report`` writes the
metrics.json and markdown. Example (about 10 minutes, 2 cores):

    python benchmarks/music_eval.py --data /tmp/cadenza-data/music21 \\
        --model sparse=runs/music-small --model dense=runs/music-dense \\
        --pieces 150 --generate 20 --threads 2 --markdown models/EVAL.md

DIR is a model directory (model.safetensors + config.json) or a training run directory
holding one in ``model/``. Writes benchmarks/results/music_eval.json and .png (``--out``)
and, with ``--markdown``, the tables as markdown.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from cadenza.codecs.music import MusicCodec
from cadenza.errors import ConfigError
from cadenza.io import write_text_atomic
from cadenza.model import SparseTransformer
from cadenza.music.eval.curves import compare_runs, model_run_dir
from cadenza.music.eval.musical import metric_stats, muspy_metrics
from cadenza.music.eval.ngram import KneserNey, score_ngram
from cadenza.music.eval.scoring import context_gain, load_pieces, score_decoding, score_model, select_pieces
from cadenza.music.eval.report import LONG, markdown, model_metrics, read_result, write_eval_md, write_metrics
from cadenza.bench.machine import machine
from cadenza.bench.results import RESULTS, exit_code, finite



def parse_model(spec: str) -> tuple[str, Path]:
    if "=" in spec:
        label, path = spec.split("=", 1)
    else:
        label, path = Path(spec).name, spec
    d = Path(path)
    if not (d / "config.json").is_file() and (d / "model" / "config.json").is_file():
        d = d / "model"
    if not (d / "config.json").is_file():
        raise ConfigError(f"{path} is neither a model directory nor a run directory with model/ in it")
    return label, d


# --------------------------------------------------------------------------- steps
def score_models(models, pieces, pitch_ids, contexts, stride, batch_tokens, progress):
    out = {}
    for label, (model_dir, model) in models.items():
        cfg = model.config
        entry = {"model_dir": str(model_dir), "attention": cfg.attention, "max_len": cfg.max_len,
                 "stride": cfg.stride, "d_model": cfg.d_model, "n_layers": cfg.n_layers,
                 "n_heads": cfg.n_heads, "parameters": model.num_params(), "contexts": {}}
        sizes = sorted({c for c in contexts if c <= cfg.max_len} | {cfg.max_len})
        for c in sizes:
            t0 = time.perf_counter()
            scores = score_model(model, pieces, pitch_ids, context=c, stride=stride,
                                    batch_tokens=batch_tokens, progress=progress, desc=f"{label} ctx {c}")
            secs = time.perf_counter() - t0
            entry["contexts"][str(c)] = {
                "all": scores.summary(),
                f"position_ge_{LONG}": scores.select(scores.position >= LONG).summary(),
                "seconds": secs,
            }
            s = entry["contexts"][str(c)]["all"]
            print(f"  {label:>8} context {c:>5}: {s['bits_per_token']:.4f} bits/token, "
                  f"{s['bits_per_note']:.3f} bits/note, top-1 {s['top1']:.3f}, top-5 {s['top5']:.3f} "
                  f"({secs:.0f} s)", flush=True)
        entry["full"] = entry["contexts"][str(cfg.max_len)]
        out[label] = entry
    return out


def nodup_scores(data, codec, models, lm, all_pieces, pieces, chosen, pitch_ids, batch_tokens) -> dict:
    """Bits/token on the scored pieces that are also in ``test-nodup``: no 16-interval window
    of their melody occurs in any train melody (``cadenza.music.eval.melody.nodup_filter``)."""
    from cadenza.music.eval.melody import melody_of, nodup_filter

    train = load_pieces(data, "train")
    keep = set(nodup_filter([melody_of(codec, p) for p in train], [melody_of(codec, p) for p in all_pieces]))
    sub = [p for i, p in zip(chosen, pieces) if i in keep]
    out = {"pieces": len(sub), "of_scored": len(pieces), "split_pieces_kept": len(keep),
           "split_pieces": len(all_pieces), "models": {}}
    print(f"test-nodup: {len(keep)} of {len(all_pieces)} pieces kept; {len(sub)} of the {len(pieces)} scored",
          flush=True)
    for label, (_, model) in models.items():
        out["models"][label] = score_model(model, sub, pitch_ids, batch_tokens=batch_tokens).summary()
    if lm is not None:
        out["ngram"] = score_ngram(lm, sub, pitch_ids).summary()
    return out


def decode_weights_check(models, pieces, pitch_ids, progress) -> dict:
    """Bits/token of the first model through one-token cached decoding, float32 vs int8 weights."""
    label, (model_dir, model) = next(iter(models.items()))
    out = {"model": label, "pieces": len(pieces)}
    for weights in ("float32", "int8"):
        t0 = time.perf_counter()
        scores = score_decoding(model, pieces, pitch_ids, weights=weights, progress=progress)
        secs = time.perf_counter() - t0
        out[weights] = dict(scores.summary(), seconds=secs, ms_per_token=1e3 * secs / max(1, len(scores)))
        s = out[weights]
        print(f"  {label:>8} decoding with {weights:>7} weights: {s['bits_per_token']:.4f} bits/token, top-1 "
              f"{s['top1']:.3f} ({s['tokens']} tokens, {s['ms_per_token']:.2f} ms/token)", flush=True)
    return out


def _train_pieces(data, train_tokens):
    train = load_pieces(data, "train")
    if train_tokens:
        keep, total = [], 0
        for p in train:
            if total >= train_tokens:
                break
            keep.append(p)
            total += len(p)
        train = keep
    return train


def select_ngram_order(data, pitch_ids, vocab, orders, train, n_val, seed):
    """Fit each order on the train pieces, score ``n_val`` validation pieces; the best order."""
    val_all = load_pieces(data, "val")
    val = [val_all[i] for i in select_pieces(len(val_all), n_val, seed)]
    table = {}
    for order in orders:
        t0 = time.perf_counter()
        lm = KneserNey(vocab, order).fit(train)
        s = score_ngram(lm, val, pitch_ids).summary()
        table[str(order)] = {**s, "seconds": time.perf_counter() - t0}
        print(f"  validation: {order}-gram {s['bits_per_token']:.4f} bits/token, top-1 {s['top1']:.3f} "
              f"({table[str(order)]['seconds']:.0f} s)", flush=True)
    best = min(orders, key=lambda o: table[str(o)]["bits_per_token"])
    return best, {"validation_pieces": len(val), "orders": table, "chosen": best}


def ngram_baseline(data, pieces, pitch_ids, vocab, orders, train_tokens, n_val, seed):
    train = _train_pieces(data, train_tokens)
    selection = None
    if len(orders) > 1:
        order, selection = select_ngram_order(data, pitch_ids, vocab, orders, train, n_val, seed)
    else:
        order = orders[0]
    t0 = time.perf_counter()
    lm = KneserNey(vocab, order).fit(train)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    scores = score_ngram(lm, pieces, pitch_ids)
    secs = time.perf_counter() - t0
    s = scores.summary()
    print(f"  {order}-gram (Kneser-Ney, {lm.fitted_tokens} train targets, fit {fit_s:.0f} s): "
          f"{s['bits_per_token']:.4f} bits/token, {s['bits_per_note']:.3f} bits/note, "
          f"top-1 {s['top1']:.3f}, top-5 {s['top5']:.3f} ({secs:.0f} s)", flush=True)
    result = {"order": order, "train_pieces": len(train), "train_targets": lm.fitted_tokens,
              "fit_seconds": fit_s, "seconds": secs, "all": s,
              f"position_ge_{LONG}": scores.select(scores.position >= LONG).summary(),
              "discounts": [t["discounts"][1:].tolist() for t in lm.tables],
              "order_selection": selection}
    return lm, result


def _compose_sampler(codec, d, model, max_new, seed, top_p):
    """Pieces as ``cadenza compose`` makes them (grammar, top-p, int8 decoding): the
    held-out piece's style, key, tempo and metre forced, its length in bars, moods free."""
    from cadenza.music.composition import compose
    from cadenza.music.load import MusicModel
    from cadenza.music.registry import weights_digest

    mm = MusicModel(network=model, codec=codec, path=Path(d), name=Path(d).name, digest=weights_digest(d))
    model.set_decode_weights("int8")

    def sample(prompts, held):
        out = []
        for k, (p, h) in enumerate(zip(prompts, held)):
            cond = codec.parse_prefix(p)[0]
            bars = max(1, min(64, sum(1 for t in h if codec.token_type(t) == "Bar")))
            style = cond.get("style") if cond.get("style") in codec.offered_styles() else None
            ts = cond.get("time_signature")
            piece = compose(mm, style=style, key=cond.get("key"), tempo=cond.get("tempo"),
                            time_signature=f"{ts[0]}/{ts[1]}" if ts else None, bars=bars, seed=seed + k,
                            top_p=top_p if top_p is not None else 0.95)
            out.append(piece.ids[len(p):])
        return out

    return sample


def musical_metrics(codec, models, lm, pieces, n, max_new, seed, temperature, top_p):
    rng = np.random.default_rng(seed + 1)
    chosen = sorted(int(i) for i in rng.choice(len(pieces), size=min(n, len(pieces)), replace=False))
    prompts, held = [], []
    for i in chosen:
        _, start = codec.parse_prefix(pieces[i])
        prompts.append([int(t) for t in pieces[i][:start]])
        held.append([int(t) for t in pieces[i][:start + max_new]])
    rows = {"held-out": [muspy_metrics(codec.decode(h)) for h in held]}
    lengths = {"held-out": [len(h) - len(p) for h, p in zip(held, prompts)]}
    ended = {"held-out": [h[-1] == codec.eos_id for h in held]}
    timing = {}
    samplers = {label: (lambda ps, s=_compose_sampler(codec, d, model, max_new, seed, top_p): s(ps, held))
                for label, (d, model) in models.items()}
    if lm is not None:
        samplers[f"{lm.order}-gram"] = lambda ps: lm.sample(ps, max_new, seed=seed, temperature=temperature,
                                                             stop_tokens=[codec.eos_id])
    for label, sampler in samplers.items():
        t0 = time.perf_counter()
        new = sampler(prompts)
        timing[label] = time.perf_counter() - t0
        rows[label] = [muspy_metrics(codec.decode(p + g)) for p, g in zip(prompts, new)]
        lengths[label] = [len(g) for g in new]
        ended[label] = [bool(g) and g[-1] == codec.eos_id for g in new]
        print(f"  sampled {len(new)} pieces from {label} in {timing[label]:.0f} s "
              f"(mean {np.mean(lengths[label]):.0f} tokens)", flush=True)
    return {
        "pieces": chosen, "max_new_tokens": max_new, "temperature": temperature, "top_p": top_p,
        "seed": seed,
        "stats": {label: metric_stats(r) for label, r in rows.items()},
        "per_piece": rows,
        "tokens": {label: {"mean": float(np.mean(v)), "std": float(np.std(v))} for label, v in lengths.items()},
        "ended_with_eos": {label: float(np.mean(v)) for label, v in ended.items()},
        "sampling_seconds": timing,
    }


# --------------------------------------------------------------------------- output
def plot(result, path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = (result.get("training") or {}).get("runs", {})
    panels = 2 if runs else 1
    fig, axes = plt.subplots(1, panels, figsize=(6.2 * panels, 4.4))
    axes = np.atleast_1d(axes)
    ax = axes[0]
    ticks = set()
    for n, (label, m) in enumerate(result["models"].items()):
        cs = sorted(int(c) for c in m["contexts"])
        ticks.update(cs)
        color = f"C{n}"
        ax.plot(cs, [m["contexts"][str(c)]["all"]["bits_per_token"] for c in cs], "o-", color=color,
                label=f"{label}: all targets")
        ax.plot(cs, [m["contexts"][str(c)][f"position_ge_{LONG}"]["bits_per_token"] for c in cs], "s--",
                color=color, label=f"{label}: targets at position ≥ {LONG}")
    if result.get("ngram"):
        ax.axhline(result["ngram"]["all"]["bits_per_token"], color="gray", ls=":",
                   label=f"{result['ngram']['order']}-gram Kneser-Ney")
    ax.set_xscale("log", base=2)
    if ticks:
        ax.set_xticks(sorted(ticks), [str(t) for t in sorted(ticks)])
        ax.minorticks_off()
    ax.set_xlabel("context (tokens)")
    ax.set_ylabel("held-out bits per token")
    ax.set_title(f"test pieces ({result['data']['pieces_scored']} of {result['data']['pieces_total']})")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    if runs:
        ax = axes[1]
        for n, (label, r) in enumerate(runs.items()):
            color = f"C{n}"
            train = r.get("train_curve") or []
            if train:
                loss = np.array([c["loss"] for c in train])
                k = min(9, len(loss))
                smooth = np.convolve(loss, np.ones(k) / k, mode="valid")
                t = np.array([c["time"] / 60 for c in train])[k - 1:]
                ax.plot(t, smooth, "-", color=color, alpha=0.35, lw=1, label=f"{label}: train loss (mean of {k})")
            curve = r["curve"]
            if curve:
                ax.plot([c["time"] / 60 for c in curve], [c["loss"] for c in curve], "o-", ms=3, color=color,
                        label=f"{label}: validation")
        if result["training"].get("common_time_s"):
            ax.axvline(result["training"]["common_time_s"] / 60, color="gray", ls=":", label="equal time")
        ax.set_xlabel("training time (minutes)")
        ax.set_ylabel("bits per token (training loop's logs)")
        ax.set_title("held-out loss vs wall-clock training time")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="music dataset directory (cadenza data music21)")
    p.add_argument("--model", action="append", default=[], metavar="LABEL=DIR",
                   help="a model directory or run directory to evaluate (repeatable)")
    p.add_argument("--split", default="test")
    p.add_argument("--pieces", type=int, default=150, help="held-out pieces to score (0 = all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--contexts", type=int, nargs="*", default=[256, 1024, 4096])
    p.add_argument("--stride", type=int, default=None, help="sliding-window stride (default context // 2)")
    p.add_argument("--context-min-pos", type=int, default=512,
                   help="context study: targets at in-piece positions >= this, whole piece vs --context-window "
                        "(0: skip)")
    p.add_argument("--context-window", type=int, default=256)
    p.add_argument("--nodup", action="store_true",
                   help="also score the test-nodup subset (pieces whose melody shares no 16-interval window "
                        "with any train melody)")
    p.add_argument("--batch-tokens", type=int, default=16384)
    p.add_argument("--ngram-order", type=int, nargs="+", default=[5],
                   help="n-gram order (0 = no n-gram baseline); several: the best on --ngram-val-pieces "
                        "validation pieces is used")
    p.add_argument("--ngram-val-pieces", type=int, default=100)
    p.add_argument("--ngram-train-tokens", type=int, default=0, help="fit on the first N train tokens (0 = all)")
    p.add_argument("--decode-pieces", type=int, default=20,
                   help="score this many of the pieces token by token through the KV cache with float32 and "
                        "with int8 decode weights, for the first --model (0 = skip)")
    p.add_argument("--generate", type=int, default=20, help="pieces to sample for MusPy metrics (0 = none)")
    p.add_argument("--max-new-tokens", type=int, default=1024)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", type=Path, default=RESULTS / "music_eval",
                   help="writes OUT.json and OUT.png")
    p.add_argument("--markdown", type=Path, default=None, help="also write the tables as markdown here")
    p.add_argument("--metrics-json", type=Path, default=None, metavar="PATH",
                   help="also write the first model's headline metrics here (a model directory's metrics.json, "
                        "which `cadenza models` shows)")
    p.add_argument("--note", action="append", default=[], help="a sentence for the markdown (repeatable)")
    p.add_argument("--progress", action="store_true")
    p.add_argument("--replot", type=Path, metavar="JSON",
                   help="only redraw the PNG (next to JSON) and the --markdown of an earlier result")
    args = p.parse_args(argv)
    if args.replot:
        plot(json.loads(args.replot.read_text()), args.replot.with_suffix(".png"))
        if args.markdown:
            write_eval_md(args.markdown, read_result(args.replot))
        print(f"redrew {args.replot.with_suffix('.png')}" + (f" and {args.markdown}" if args.markdown else ""))
        return 0
    return exit_code(run, args, argv)


def run(args, argv) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    codec = MusicCodec.load(args.data / "tokenizer.json")
    pitch_ids = sorted(codec.pitch_ids())
    models = {}
    for spec in args.model:
        label, d = parse_model(spec)
        model = SparseTransformer.load(d)
        if model.config.vocab_size != codec.vocab_size:
            raise ConfigError(f"{d} has vocab_size {model.config.vocab_size}, the dataset's tokenizer "
                              f"{codec.vocab_size}")
        models[label] = (d, model)
        run_dir = model_run_dir(d)
        run_json = run_dir / "run.json" if run_dir else None
        if run_json and run_json.is_file():
            trained_on = json.loads(run_json.read_text()).get("train_config", {}).get("data")
            if trained_on and Path(trained_on).resolve() != args.data.resolve():
                print(f"warning: {label} was trained on {trained_on}, evaluating on {args.data}", file=sys.stderr)
    all_pieces = load_pieces(args.data, args.split)
    chosen = select_pieces(len(all_pieces), args.pieces or None, args.seed)
    pieces = [all_pieces[i] for i in chosen]
    targets = sum(len(x) - 1 for x in pieces)
    notes = int(sum(np.isin(x[1:], pitch_ids).sum() for x in pieces))
    print(f"{len(pieces)} of {len(all_pieces)} {args.split} pieces, {targets} targets, {notes} notes", flush=True)
    result = {
        "command": "python benchmarks/music_eval.py " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "machine": machine(),
        "threads": torch.get_num_threads(), "torch": torch.__version__,
        "data": {"dir": str(args.data), "split": args.split, "pieces_total": len(all_pieces),
                 "pieces_scored": len(pieces), "seed": args.seed, "pieces": chosen, "targets": targets,
                 "notes": notes},
        "vocab": {"size": codec.vocab_size, "pitches": len(pitch_ids)},
        "stride": args.stride,
        "notes": list(args.note),
    }
    result["models"] = score_models(models, pieces, pitch_ids, args.contexts, args.stride,
                                    args.batch_tokens, args.progress)
    from cadenza.music.registry import weights_digest

    for label, (d, model) in models.items():
        result["models"][label]["weights_sha256_12"] = weights_digest(d)
        if args.context_min_pos:
            print(f"context study for {label} (positions >= {args.context_min_pos}, all {args.split} pieces)",
                  flush=True)
            result["models"][label]["context_gain"] = context_gain(
                model, all_pieces, pitch_ids, window=args.context_window, min_pos=args.context_min_pos)
    if args.decode_pieces and models:
        result["decode_weights"] = decode_weights_check(models, pieces[:args.decode_pieces], pitch_ids,
                                                        args.progress)
    lm = None
    orders = [o for o in args.ngram_order if o > 0]
    if orders:
        lm, result["ngram"] = ngram_baseline(args.data, pieces, pitch_ids, codec.vocab_size, orders,
                                             args.ngram_train_tokens, args.ngram_val_pieces, args.seed)
    if args.nodup:
        result["nodup"] = nodup_scores(args.data, codec, models, lm, all_pieces, pieces, chosen, pitch_ids,
                                       args.batch_tokens)
    runs = {label: model_run_dir(d) for label, (d, _) in models.items()}
    runs = {k: v for k, v in runs.items() if v is not None}
    result["training"] = compare_runs(runs) if runs else None
    if args.generate:
        result["muspy"] = musical_metrics(codec, models, lm, pieces, args.generate, args.max_new_tokens,
                                          args.seed, args.temperature, args.top_p)
    result["seconds"] = time.perf_counter() - t_start
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out.with_suffix(".json"), json.dumps(finite(result), indent=1, default=str))
    plot(result, out.with_suffix(".png"))
    print()
    print(markdown(result))
    if args.markdown:
        write_eval_md(args.markdown, result)
        print(f"wrote {args.markdown}")
    if args.metrics_json and result["models"]:
        write_metrics(args.metrics_json, model_metrics(result))
        print(f"wrote {args.metrics_json}")
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.png')}")
    return 0
