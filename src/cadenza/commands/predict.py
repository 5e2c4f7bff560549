"""`cadenza predict`: the most likely next notes of a MIDI file, with their probabilities."""

from __future__ import annotations

from cadenza.bounds import PREDICT_TOP
from cadenza.commands.music_options import load, options, threads


def _predict(args) -> int:
    from cadenza.music.predict import predict_next
    from cadenza.music.preflight import check_pitch_range, read_input

    score = read_input(args.input)
    threads(args.threads)
    mm = load(args)
    check_pitch_range(score, mm.codec, args.input)
    pred = predict_next(mm, args.input, top=args.top, memory=not args.no_memory)
    if args.json:
        import json

        print(json.dumps({
            "input": args.input, "model": f"{mm.name}@{mm.digest}", "last_note": pred.last_note,
            "program": pred.program, "p_end": pred.p_end, "p_same_onset": pred.p_same_onset,
            "coverage": pred.coverage, "memory": pred.memory, "onsets": [{"onset": o, "probability": p} for o, p in pred.onsets],
            "notes": [{"pitch": n.pitch, "name": n.name, "probability": n.probability,
                       "network_probability": n.network_probability, "onset": n.onset,
                       "onset_probability": n.onset_probability, "after_quarters": float(n.after_quarters),
                       "duration": n.duration, "duration_quarters": float(n.duration_quarters),
                       "duration_probability": n.duration_probability} for n in pred.notes]}, indent=2))
        return 0
    inst = "drums" if pred.program == -1 else f"program {pred.program}"
    print(f"Next note after {args.input} (last note {pred.last_note}; {inst}; model {mm.name}@{mm.digest}):")
    rows = [("#", "note", "probability", "network alone", "most likely onset", "after", "most likely duration")]
    for k, n in enumerate(pred.notes, 1):
        after = float(n.after_quarters)
        rows.append((str(k), n.name, f"{100 * n.probability:5.1f}%", f"{100 * n.network_probability:5.1f}%",
                     f"{n.onset} ({100 * n.onset_probability:.0f}%)",
                     f"{after:g} quarter{'s' if after != 1 else ''}",
                     f"{n.duration} ({100 * n.duration_probability:.0f}%)"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  " + "  ".join(c.rjust(w) if i in (0, 2, 3) else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))))
    onsets = ", ".join(f"{label} {100 * p:.0f}%" for label, p in pred.onsets)
    print(f"Probability: that the next note (the first one starting after the input's last onset) has this "
          f"pitch, given that it starts at one of the onsets considered ({onsets}; together "
          f"{100 * pred.coverage:.0f}% of the model's timing probability for the next onset). "
          f"The model also gives {100 * pred.p_same_onset:.0f}% to another note at the same time as the last "
          f"one and {100 * pred.p_end:.0f}% to the piece ending there." + (
              " The probability mixes the network with the piece memory (a short-term model of this melody "
              "so far); 'network alone' is the network's own (--no-memory ranks by it)." if pred.memory else ""))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "predict", help="the most likely next notes of a MIDI file, with probabilities",
        description="Show the model's most likely next notes after IN.mid as a table: pitch name, probability, "
                    "the most likely onset and duration. The probability of a pitch is the model's probability "
                    "that the next note (the first note starting after the input's last onset) has that pitch, "
                    "summed over the likeliest onsets for it (shown below the table) and conditioned on it "
                    "starting at one of them. For several notes at one onset it is the note the model would "
                    "write first (the REMI order: shorter, then lower, first).")
    p.add_argument("input", metavar="IN.mid", help="the MIDI file to predict from")
    p.add_argument("--top", type=int, default=5, metavar="N", help=f"how many candidate notes to show, {PREDICT_TOP.lo} to {PREDICT_TOP.hi} (default 5)")
    p.add_argument("--json", action="store_true", help="print the table as one JSON object")
    p.add_argument("--no-memory", action="store_true",
                   help="the network alone: do not mix in the piece memory (a short-term model of the melody so "
                        "far that favours what the piece has already done; both figures are shown by default)")
    options(p, output=False)
    p.set_defaults(func=_predict)
