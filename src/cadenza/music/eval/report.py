"""The files an evaluation leaves in a model folder: ``metrics.json`` and ``EVAL.md``.

``metrics.json`` holds a model's headline held-out numbers as one flat JSON object
(``model_metrics`` builds it from a ``benchmarks/music_eval.py`` result, ``write_metrics``
writes it, ``read_metrics`` reads it back for ``cadenza models`` and ``load_model``; older
folders may instead carry a ``"metrics"`` entry in ``config.json`` or a metrics section in
their model card). ``EVAL.md`` is the same result as markdown tables (``markdown``,
``write_eval_md``; ``read_result`` reads a result JSON back for redrawing them).

Light on purpose: no torch, no numpy at import (``cadenza models`` reads metrics through it).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from cadenza.io import write_text_atomic
from cadenza.model_files import CONFIG_FILE

METRICS_FILE = "metrics.json"
CARD_FILE = "MODEL_CARD.md"
EVAL_TITLE = "# Cadenza music model: evaluation\n\n"
LONG = 1024   # context rows also report targets at positions >= LONG


# --------------------------------------------------------------------------- metrics.json
def read_metrics(directory) -> dict:
    """Held-out metrics of a model: metrics.json if present, else a "metrics" entry of
    config.json, else what the model card states as metrics (see ``card_metrics``), else {}."""
    d = Path(directory)
    for path, key in ((d / METRICS_FILE, None), (d / CONFIG_FILE, "metrics")):
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if key is not None:
            data = data.get(key) if isinstance(data, dict) else None
        if isinstance(data, dict) and data:
            return data
    card = d / CARD_FILE
    if card.is_file():
        try:
            return card_metrics(card.read_text(encoding="utf-8", errors="replace"))
        except OSError:
            return {}
    return {}


_NUMBER = re.compile(r"^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*(%|bits?\S*|s|ms)?$")


def card_metrics(text: str) -> dict:
    """Metrics a model card states in a section whose heading mentions metrics, evaluation
    or results: two-column table rows ``| name | number |`` and list items ``- name: number``."""
    out: dict = {}
    in_section = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            in_section = any(w in stripped.lower() for w in ("metric", "evaluation", "result"))
            continue
        if not in_section:
            continue
        if stripped.startswith("|"):
            cells = [c.strip() for c in stripped.strip("|").split("|")]
            if len(cells) == 2 and cells[0] and _NUMBER.match(cells[1].replace(",", "")):
                out[cells[0].strip("*_ ")] = cells[1]
        elif stripped.startswith(("- ", "* ")) and ":" in stripped:
            name, _, value = stripped[2:].partition(":")
            if name.strip() and _NUMBER.match(value.strip().replace(",", "")):
                out[name.strip("*_ ")] = value.strip()
    return out


def model_metrics(result) -> dict:
    """Headline numbers of the first model (for its metrics.json), with the baselines."""
    label, m = next(iter(result["models"].items()))
    s = m["full"]["all"]
    r3 = lambda x: None if x is None or not math.isfinite(x) else round(x, 3)   # noqa: E731
    out = {"heldout_bits_per_token": r3(s["bits_per_token"]), "heldout_bits_per_note": r3(s["bits_per_note"]),
           "top1_pitch_accuracy": r3(s["top1"]), "top5_pitch_accuracy": r3(s["top5"])}
    for c, v in sorted(m["contexts"].items(), key=lambda kv: int(kv[0])):
        out[f"bits_per_token_context_{c}"] = r3(v["all"]["bits_per_token"])
    run = ((result.get("training") or {}).get("runs") or {}).get(label)
    if run and run.get("final"):
        out["val_bits_per_token_final"] = r3(run["final"]["loss"])
        out["steps"] = run["final"]["step"]
        out["training_minutes"] = round(run["train_time_s"] / 60, 1)
    for other, o in list(result["models"].items())[1:]:
        out[f"{other}_bits_per_token"] = r3(o["full"]["all"]["bits_per_token"])
    g = result.get("ngram")
    if g:
        out[f"ngram{g['order']}_bits_per_token"] = r3(g["all"]["bits_per_token"])
    dw = result.get("decode_weights")
    if dw:
        for w in ("float32", "int8"):
            out[f"{w}_decoding_bits_per_token"] = r3(dw[w]["bits_per_token"])
    out["source"] = (f"models/EVAL.md ({result['command'].split(' --markdown')[0]}; "
                     f"{result['data']['pieces_scored']} {result['data']['split']} pieces)")
    return out


def write_metrics(path, metrics: dict) -> Path:
    """Write ``metrics`` as a metrics.json (``path``: the file, or a model folder to put it in)."""
    p = Path(path)
    p = p / METRICS_FILE if p.is_dir() else p
    write_text_atomic(p, json.dumps(metrics, indent=2) + "\n")
    return p


# --------------------------------------------------------------------------- EVAL.md
def fmt(x, digits=3):
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.{digits}f}"


def pct(x):
    return "–" if x is None or not math.isfinite(x) else f"{100 * x:.1f}%"


def ms(stat, n_pieces=None):
    if not math.isfinite(stat["mean"]):
        return "–"
    out = f"{stat['mean']:.3f} ± {stat['std']:.3f}"
    return out if n_pieces is None or stat["n"] == n_pieces else out + f" (n={stat['n']})"


def summary_lines(result) -> list[str]:
    """Plain statements of what the numbers say (no judgement beyond the comparisons)."""
    out = []
    rows = {label: m["full"]["all"] for label, m in result["models"].items()}
    if result.get("ngram"):
        rows[f"{result['ngram']['order']}-gram Kneser-Ney"] = result["ngram"]["all"]
    if rows:
        ranked = sorted(rows, key=lambda k: rows[k]["bits_per_token"])
        out.append("Held-out bits per token, best first: " + ", ".join(
            f"{k} {rows[k]['bits_per_token']:.3f}" for k in ranked) + "; top-1 next pitch: " + ", ".join(
            f"{k} {pct(rows[k]['top1'])}" for k in ranked) + ".")
    for label, m in result["models"].items():
        cs = sorted(m["contexts"], key=int)
        if len(cs) > 1:
            lo, hi = m["contexts"][cs[0]], m["contexts"][cs[-1]]
            a = hi["all"]["bits_per_token"] - lo["all"]["bits_per_token"]
            b = hi[f"position_ge_{LONG}"]["bits_per_token"] - lo[f"position_ge_{LONG}"]["bits_per_token"]
            out.append(f"{label}: going from {cs[0]} to {cs[-1]} tokens of context changes bits per token by "
                       f"{a:+.3f} over all targets and by {b:+.3f} over the targets at position ≥ {LONG}.")
    tr = result.get("training") or {}
    runs = tr.get("runs") or {}
    at = {k: r["at_common_time"]["loss"] for k, r in runs.items() if r.get("at_common_time")}
    if len(at) > 1 and tr.get("common_time_s"):
        ranked = sorted(at, key=at.get)
        out.append(f"At equal training time ({tr['common_time_s'] / 60:.1f} min) the validation loss is "
                   + ", ".join(f"{k} {at[k]:.3f}" for k in ranked) + " bits per token.")
    return out


def markdown(result) -> str:
    """The tables of a ``music_eval`` result as markdown (the body of EVAL.md)."""
    from cadenza.music.eval.musical import MUSPY_METRICS

    d = result["data"]
    L = []
    L.append("## Held-out evaluation\n")
    L.append(f"Data: `{d['dir']}`, split `{d['split']}`: {d['pieces_scored']} of {d['pieces_total']} held-out "
             f"pieces (random, seed {d['seed']}), {d['targets']:,} target tokens of which {d['notes']:,} notes "
             f"(Pitch tokens); every piece is scored whole from its BOS. Command:\n")
    L.append(f"    {result['command']}\n")
    L.append(f"Measured on {result['machine']} with {result['threads']} torch threads, torch {result['torch']}; "
             f"the whole evaluation took {result['seconds'] / 60:.1f} minutes.\n")
    for note in result.get("notes") or []:
        L.append(f"Note: {note}\n")
    summary = summary_lines(result)
    if summary:
        L.append("In short (computed from the tables below):\n")
        L.extend(f"- {line}" for line in summary)
        L.append("")
    L.append("### Next-token prediction\n")
    L.append("| model | attention | parameters | context | bits / token | bits / note | top-1 pitch | top-5 pitch |")
    L.append("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label, m in result["models"].items():
        s = m["full"]["all"]
        L.append(f"| {label} | {m['attention']} | {m['parameters'] / 1e6:.2f}M | {m['max_len']} | "
                 f"{fmt(s['bits_per_token'])} | {fmt(s['bits_per_note'])} | {pct(s['top1'])} | {pct(s['top5'])} |")
    g = result.get("ngram")
    if g:
        s = g["all"]
        L.append(f"| {g['order']}-gram Kneser-Ney | – | – | {g['order'] - 1} | {fmt(s['bits_per_token'])} | "
                 f"{fmt(s['bits_per_note'])} | {pct(s['top1'])} | {pct(s['top5'])} |")
    p = result["vocab"]
    L.append(f"| uniform | – | – | 0 | {fmt(math.log2(p['size']))} | – | {pct(1 / p['pitches'])} | "
             f"{pct(5 / p['pitches'])} |")
    L.append("")
    if g:
        sel = g.get("order_selection")
        how = (f"order {g['order']} chosen among {', '.join(sel['orders'])} by bits/token on "
               f"{sel['validation_pieces']} validation pieces "
               + "(" + ", ".join(f"{o}: {v['bits_per_token']:.3f}" for o, v in sel["orders"].items()) + ")"
               if sel else f"order {g['order']}")
        L.append(f"The n-gram baseline is interpolated modified Kneser-Ney over the same tokens "
                 f"(`cadenza.music.eval.ngram.KneserNey`, numpy; nltk's pure-Python KneserNeyInterpolated is far "
                 f"too slow for millions of tokens and full-vocabulary rankings), fitted on "
                 f"{g['train_targets']:,} target tokens of {g['train_pieces']:,} train pieces; {how}. "
                 f"Uniform = every token equally likely.\n")
    L.append("Bits per note = all bits of a piece (every token: conditioning prefix, bars, positions, "
             "programs, pitches, velocities, durations, EOS) divided by its notes. Top-k pitch accuracy: "
             "at every Pitch target, is the true pitch among the k most likely pitch tokens (the "
             "distribution restricted to Pitch tokens).\n")
    nd = result.get("nodup")
    if nd:
        L.append("### test-nodup\n")
        L.append(f"The {nd['pieces']} scored pieces (of {nd['of_scored']}) that are in `test-nodup`: no 16-interval "
                 f"window of their melody (transposition-invariant) occurs in any train melody "
                 f"({nd['split_pieces_kept']} of the split's {nd['split_pieces']} pieces qualify).\n")
        L.append("| model | bits / token | bits / note | top-1 pitch | top-5 pitch |")
        L.append("| --- | ---: | ---: | ---: | ---: |")
        rows = list(nd["models"].items()) + ([(f"{result['ngram']['order']}-gram Kneser-Ney", nd["ngram"])]
                                             if nd.get("ngram") else [])
        for label, x in rows:
            L.append(f"| {label} | {fmt(x['bits_per_token'])} | {fmt(x['bits_per_note'])} | {pct(x['top1'])} | "
                     f"{pct(x['top5'])} |")
        L.append("")
    ctx_rows = [(label, m["context_gain"]) for label, m in result["models"].items()
                if (m.get("context_gain") or {}).get("pieces")]
    if ctx_rows:
        L.append("### What whole-piece context buys\n")
        L.append("Targets at in-piece position >= {} of every {} piece longer than that, scored with the whole "
                 "piece as context (up to the model's max_len) and with only the piece's conditioning prefix plus "
                 "its last {} tokens (sliding by {}); gain = 1 - whole / recent, 95% interval from a bootstrap "
                 "over pieces.\n".format(ctx_rows[0][1]["min_pos"], d["split"], ctx_rows[0][1]["window"],
                                         ctx_rows[0][1]["stride"]))
        L.append("| model | pieces | targets | bits/token, whole piece | bits/token, last 256 | gain | 95% interval "
                 "| pieces where whole is better |")
        L.append("| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |")
        for label, c in ctx_rows:
            lo, hi = c["gain_ci95"]
            L.append(f"| {label} | {c['pieces']} | {c['targets']:,} | {c['bits_whole']:.3f} | {c['bits_recent']:.3f} "
                     f"| {100 * c['gain']:+.1f}% | {100 * lo:+.1f}% .. {100 * hi:+.1f}% | "
                     f"{c['pieces_where_whole_is_better']} |")
        L.append("")
    dw = result.get("decode_weights")
    if dw:
        a, b = dw["float32"], dw["int8"]
        L.append("### Int8 decoding\n")
        L.append(f"Generation decodes one token at a time with int8 weights by default (`cadenza.quant`; "
                 f"`--exact` uses float32). Scored that way, token by token through the KV cache, on the "
                 f"first {dw['pieces']} of the pieces above ({a['tokens']:,} targets, each piece's first "
                 f"{next(iter(result['models'].values()))['max_len']} tokens), model {dw['model']}:\n")
        L.append("| decode weights | bits / token | bits / note | top-1 pitch | top-5 pitch | ms / token |")
        L.append("| --- | ---: | ---: | ---: | ---: | ---: |")
        for w, s in (("float32", a), ("int8", b)):
            L.append(f"| {w} | {fmt(s['bits_per_token'], 4)} | {fmt(s['bits_per_note'])} | {pct(s['top1'])} | "
                     f"{pct(s['top5'])} | {s['ms_per_token']:.2f} |")
        L.append("")
    L.append("### What longer context buys\n")
    L.append(f"The same models, each target seeing at most C tokens before it (pieces longer than C: "
             f"sliding windows of C tokens every C/2, so a target sees between C/2 and C-1 tokens). "
             f"Targets at position ≥ {LONG} are where the context sizes differ most.\n")
    L.append(f"| model | context C | bits / token (all) | top-1 (all) | bits / token (position ≥ {LONG}) | "
             f"top-1 (position ≥ {LONG}) | mean context (position ≥ {LONG}) |")
    L.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label, m in result["models"].items():
        for c in sorted(m["contexts"], key=int):
            a, b = m["contexts"][c]["all"], m["contexts"][c][f"position_ge_{LONG}"]
            L.append(f"| {label} | {c} | {fmt(a['bits_per_token'])} | {pct(a['top1'])} | "
                     f"{fmt(b['bits_per_token'])} | {pct(b['top1'])} | {fmt(b['mean_context'], 0)} |")
    any_long = next(iter(result["models"].values()))["full"][f"position_ge_{LONG}"] if result["models"] else None
    if any_long:
        L.append(f"\n({any_long['tokens']:,} targets in {any_long['pieces']} pieces lie at position ≥ {LONG}.)\n")
    tr = result.get("training")
    if tr and tr.get("runs"):
        L.append("### Equal training time\n")
        L.append("Held-out loss as logged by the training loop (bits/token on the validation pieces it "
                 "evaluates: whole pieces from their BOS for music data made of pieces, fixed windows "
                 "otherwise) against training time (evaluation and checkpointing excluded).\n")
        common = tr.get("common_time_s")
        L.append(f"| run | training time | steps | final val bits / token | val bits / token at "
                 f"{fmt((common or 0) / 60, 1)} min (equal time) |")
        L.append("| --- | ---: | ---: | ---: | ---: |")
        for label, r in tr["runs"].items():
            f, at = r.get("final"), r.get("at_common_time")
            t = r.get("train_time_s")
            L.append(f"| {label} | {fmt((t or math.nan) / 60, 1)} min | {f['step'] if f else '–'} | "
                     f"{fmt(f['loss'] if f else None)} | "
                     f"{fmt(at['loss'] if at else None)}"
                     + (f" (step {at['step']}, at {at['time'] / 60:.1f} min)" if at else "") + " |")
        L.append("\n(The last validation evaluation at or before the equal time is shown.)\n")
    mm = result.get("muspy")
    if mm:
        L.append("### MusPy metrics of generated pieces\n")
        L.append(f"{len(mm['pieces'])} conditioning prefixes (style, key, tempo, metre) taken from held-out "
                 f"pieces. Each transformer composes as `cadenza compose` does (the grammar, int8 decoding, "
                 f"top-p {mm['top_p'] or 0.95}, seeds {mm['seed']}.., the prefix forced, moods free, as many "
                 f"bars as the held-out piece's first {mm['max_new_tokens']} tokens hold); the n-gram samples "
                 f"tokens until EOS or {mm['max_new_tokens']} new tokens (temperature {mm['temperature']}). "
                 f"The held-out column is the same pieces cut to the same token budget. Mean ± std over "
                 f"pieces; (n=...) where only n pieces had a value (MusPy gives none for a piece without "
                 f"notes, and no groove consistency for one shorter than two measures).\n")
        labels = list(mm["stats"])
        L.append("| metric | " + " | ".join(labels) + " |")
        L.append("| --- |" + " ---: |" * len(labels))
        for metric in MUSPY_METRICS:
            L.append(f"| {metric.replace('_', ' ')} | " + " | ".join(ms(mm["stats"][l][metric], len(mm["pieces"])) for l in labels) + " |")
        L.append("| new tokens | " + " | ".join(f"{mm['tokens'][l]['mean']:.0f} ± {mm['tokens'][l]['std']:.0f}"
                                               for l in labels) + " |")
        L.append("| ended with EOS | " + " | ".join(pct(mm["ended_with_eos"][l]) for l in labels) + " |")
        L.append("")
    L.append("Definitions: `cadenza.music.eval` (module docstring); script: `benchmarks/music_eval.py`; "
             "raw numbers: `benchmarks/results/music_eval.json`, plot: `benchmarks/results/music_eval.png`.\n")
    return "\n".join(L)


def write_eval_md(path, result) -> Path:
    """Write EVAL.md: the title and ``markdown(result)``."""
    write_text_atomic(path, EVAL_TITLE + markdown(result))
    return Path(path)


def read_result(path) -> dict:
    """A result JSON written by ``benchmarks/music_eval.py``, its nulls back to NaN where they were numbers."""
    return _nan(json.loads(Path(path).read_text()))


_NUMBERS = {"bits_per_token", "bits_per_note", "top1", "top5", "mean_context", "mean", "std"}


def _nan(x, key=None):
    """Undo _finite for the numbers of a result read back from JSON (null -> NaN)."""
    from cadenza.music.eval.musical import MUSPY_METRICS

    if x is None and (key in _NUMBERS or key in MUSPY_METRICS):
        return math.nan
    if isinstance(x, dict):
        return {k: _nan(v, k) for k, v in x.items()}
    if isinstance(x, list):
        return [_nan(v) for v in x]
    return x
