"""`cadenza provenance FILE.mid` and `cadenza check FILE.mid`: who wrote a piece, and is it original?

Thin over ``cadenza.music.authorship.provenance`` (the notes' hash, the sidecar record, per-note credit)
and ``cadenza.music.authorship.originality`` (the longest run shared with the training corpus).
"""

from __future__ import annotations

import json

from cadenza.errors import ConfigError


def _provenance(args) -> int:
    from cadenza.music.authorship.provenance import describe_note, verify

    v = verify(args.input)
    if args.json:
        print(json.dumps(v.to_dict(), indent=2, default=str))
        return 0
    rec = v.record or {}
    if v.status == "no record":
        print(f"{v.path}: no record: {v.notes} notes, and no Cadenza provenance (no marker with a notes hash"
              f"{' and no sidecar' if not v.sidecar else ''}); nothing says who wrote it")
    elif v.status == "unchanged":
        print(f"{v.path}: unchanged: its {v.notes} notes match the provenance record (notes sha256 {v.notes_sha256[:16]}...)")
    else:
        print(f"{v.path}: edited after generation: its notes no longer match the record "
              f"(recorded sha256 {v.recorded_sha256[:16]}..., now {v.notes_sha256[:16]}...)")
    if v.sidecar_problem:
        print(f"  note: {v.sidecar_problem}")
    if v.marker:
        print(f"  marker: {v.marker}")
    if rec:
        m = rec.get("model") or {}
        print(f"  made by: cadenza {rec.get('kind')} (Cadenza {rec.get('cadenza_version')}), model "
              f"{m.get('name')}@{m.get('weights_sha256_12')}, seed {rec.get('seed')}, {rec.get('created', '?')}")
        td = m.get("training_data") or {}
        if td:
            print(f"  training data: {td.get('data_dir', '?')} (manifest sha256 {str(td.get('manifest_sha256'))[:16]}...)")
        if rec.get("input"):
            print(f"  input: {rec['input'].get('path')} (sha256 {str(rec['input'].get('sha256'))[:16]}...)")
        if rec.get("command"):
            print(f"  command: {rec['command']}")
    if v.credit:
        c = v.credit
        extra = f", {c['edited']} edited or added since" if c.get("edited") else ""
        print(f"  credit ({v.credit_source}): {c['person']} notes by a person, {c['model']} by the model"
              f"{extra}; human share {c['human_percent']:g}%")
    tpq = int(rec.get("ticks_per_quarter") or 0)
    for label, notes in (("added or changed", v.added), ("removed or changed", v.removed)):
        if notes and tpq:
            shown = ", ".join(describe_note(n, tpq) for n in notes[:args.max_notes])
            more = f" and {len(notes) - args.max_notes} more" if len(notes) > args.max_notes else ""
            print(f"  {len(notes)} note{'s' if len(notes) != 1 else ''} {label}: {shown}{more}")
    return 0


def _check(args) -> int:
    from cadenza.codecs.music import load_midi
    from cadenza.music.authorship.originality import check_score, default_corpus, index_for

    if args.flag_run < 2:
        raise ConfigError(f"--flag-run must be a whole number of at least 2 notes, not {args.flag_run}")
    if args.export_index:
        _export(args)
        if not args.input:
            return 0
    if not args.input:
        raise ConfigError("give the MIDI file to check (cadenza check FILE.mid), or --export-index")
    score = load_midi(args.input)
    corpus = args.corpus or default_corpus(args.model)
    idx = index_for(corpus, progress=True, rebuild=args.rebuild)
    r = check_score(idx, score, flag_run=args.flag_run)
    if args.json:
        d = r.to_dict()
        d["input"] = args.input
        print(json.dumps(d, indent=2))
        return 0
    verdict = (f"FLAGGED: a near-copy of {r.near.notes} notes of training piece {r.near.piece}"
               if r.flagged else "no long copy of a training piece found")
    print(f"{args.input}: {r.notes} notes; originality score {r.score:.2f}; {verdict} "
          f"(checked against {r.index_notes:,} notes of {idx.corpus} in {r.seconds:.2f} s)")
    for label, run in (("longest shared run, intervals (any transposition)", r.exact_intervals),
                       ("longest shared run, intervals and rhythm", r.exact_rhythm),
                       ("longest near-copy run (1 note in 10 may differ)", r.near)):
        where = (f": bar {run.bar} here = bar {run.piece_bar} of {run.piece}"
                 + (f" ({run.title})" if run.title else "") if run.notes > 1 and run.piece else "")
        diff = f", {run.differing} differing" if run.differing else ""
        print(f"  {label}: {run.notes} notes{diff}{where}")
    print(f"  score = share of the notes outside every exact run of >= {r.score_run} notes shared with a "
          f"training piece; flagged when the near-copy run reaches {r.flag_run} notes")
    return 0


def _export(args) -> None:
    """--export-index: the model's notes file from its training corpus (or --corpus)."""
    from pathlib import Path

    from cadenza.music.authorship.corpus_notes import export_notes
    from cadenza.music.registry import default_model_dir
    from cadenza.music.authorship.originality import CorpusIndexError, corpus_folder, model_corpus

    m = Path(args.model) if args.model else default_model_dir()
    info = model_corpus(m) or {}
    name = args.corpus or info.get("data_dir")
    if not name:
        raise ConfigError(f"{m} names no training corpus; pass --corpus DATA_DIR to export one")
    d = Path(name) if args.corpus else corpus_folder(name)
    if not (d / "meta.json").is_file():
        raise CorpusIndexError(f"{d} is not a corpus folder (no meta.json); build it with "
                          f"`{info.get('build') or 'cadenza data music21 --out ' + str(name)}` first")
    e = export_notes(d, m, data_dir_name=str(name))
    print(f"wrote {m / e['path']} ({e['notes']:,} notes of {e['pieces']:,} pieces, {e['bytes'] / 1e6:.2f} MB, "
          f"sha256 {e['sha256'][:16]}...) and recorded it in {m / 'corpus.json'}")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "provenance", help="show who wrote a MIDI file's notes and whether they changed since generation",
        description="Print the provenance record of a MIDI file Cadenza wrote (its marker and the OUT.json "
                    "sidecar next to it: model and weights hash, training data, input hash, seed, settings, "
                    "command, time) and say whether its notes still match it: unchanged, edited after "
                    "generation (with the notes added and removed), or no record. Per-note credit: how many "
                    "notes a person wrote (the input of continue, the melody of harmonize) and how many the "
                    "model wrote. The hash shows edits; it does not prove authorship (the marker and sidecar "
                    "can be stripped): see RESPONSIBLE_USE.md.")
    p.add_argument("input", metavar="FILE.mid", help="the MIDI file to check (its FILE.json is read if present)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument("--max-notes", type=int, default=8, metavar="N", help="edited notes to list (default 8)")
    p.set_defaults(func=_provenance)

    from cadenza.music.authorship.originality import FLAG_RUN

    p = subparsers.add_parser(
        "check", help="check a MIDI file against the training corpus for copying",
        description="Find the longest run of consecutive notes FILE.mid shares with any training piece of a "
                    "corpus, invariant to transposition (pitch intervals), with and without rhythm, and the "
                    "longest near-copy run (the same alignment, one note in ten may differ); name the training "
                    "piece and the bars; give an originality score (the share of notes outside every shared "
                    "run of 16 or more notes). Without --corpus the default model's training corpus is used: its "
                    "folder if it is on this disk, else the notes file the model ships "
                    "(models/cadenza-music-v3/originality/notes.npz). The index is built from it once into the "
                    "user's cache folder ($CADENZA_CACHE, else ~/.cache/cadenza; seconds for the music21 corpus) "
                    "and a check then takes well under a second.")
    p.add_argument("input", metavar="FILE.mid", nargs="?", help="the MIDI file to check")
    p.add_argument("--corpus", metavar="DATA_DIR", help="a corpus folder built with `cadenza data` (its train "
                                                        "split is checked) or notes file; default: the "
                                                        "default model's training corpus, else its notes file")
    p.add_argument("--model", metavar="DIR", help="take the corpus named by this model folder instead")
    p.add_argument("--flag-run", type=int, default=FLAG_RUN, metavar="N",
                   help=f"flag the piece when a near-copy run reaches N notes (default {FLAG_RUN})")
    p.add_argument("--rebuild", action="store_true", help="rebuild the corpus index even if one is cached")
    p.add_argument("--export-index", action="store_true",
                   help="write the model's compact notes file (MODEL/originality/notes.npz, what the index is "
                        "built from) from its training corpus (or --corpus) and record its sha256 in "
                        "MODEL/corpus.json; the shipped model's was made this way, so that a check works "
                        "without the corpus on disk")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=_check)
