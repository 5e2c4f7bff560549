"""`cadenza data music21` and `cadenza data midi`: symbolic-music token datasets.

These live under the shared `cadenza data` group: ``cadenza.commands.data`` lists
``register_music21`` and ``register_midi`` in its ``BUILDERS``.
"""

from __future__ import annotations

from pathlib import Path

_OUTPUTS = ("DATA_DIR gets train.bin / val.bin / test.bin and meta.json (the shared token format), "
            "tokenizer.json (rebuild the exact tokenizer with cadenza.codecs.music.MusicCodec.load), "
            "manifest.csv (every piece: source, collection, composer, licence, split, status, key, tempo, "
            "mood) and build.log (skipped pieces and why). Each piece is BOS, a conditioning prefix "
            "(style, key, tempo, time signature, valence, energy), its MidiTok REMI tokens, EOS. Splits "
            "are by piece, from a hash, so no held-out piece leaks into training. Interrupted builds "
            "resume from DATA_DIR/.cache.")


def _print(summary) -> int:
    for line in summary.lines():
        print(line)
    return 0


def _tokenizer(args):
    """The codec of ``--tokenizer MODEL_DIR`` (a model folder or its tokenizer.json), or None."""
    if not args.tokenizer:
        return None
    from cadenza.codecs.music import MusicCodec
    from cadenza.errors import DataError

    path = Path(args.tokenizer)
    if path.is_dir() and not (path / "tokenizer.json").is_file():
        raise DataError(f"{path} has no tokenizer.json; give a music model folder or its tokenizer.json")
    return MusicCodec.load(path)


def _music21(args) -> int:
    from cadenza.data.music import build_music21

    cols = [c for part in (args.collections or []) for c in part.split(",") if c]
    codec = _tokenizer(args)
    return _print(build_music21(args.out, collections=cols or None, limit=args.limit, workers=args.workers,
                                val_fraction=args.val_fraction, test_fraction=args.test_fraction,
                                progress=not args.no_progress, use_cache=not args.no_cache,
                                codec=codec, fixed_tokenizer=codec is not None,
                                commercial_ok=args.commercial_ok, allow_unknown_licence=args.allow_unknown_licence,
                                as_written=args.as_written))


def _midi(args) -> int:
    from cadenza.data.music import build_midi

    codec = _tokenizer(args)
    return _print(build_midi(args.source, args.out, style=args.style, licence=args.licence,
                             composer=args.composer, workers=args.workers, val_fraction=args.val_fraction,
                             test_fraction=args.test_fraction, progress=not args.no_progress,
                             use_cache=not args.no_cache, codec=codec, fixed_tokenizer=codec is not None,
                             commercial_ok=args.commercial_ok, allow_unknown_licence=args.allow_unknown_licence))


def _common(p) -> None:
    p.add_argument("--out", required=True, metavar="DATA_DIR", help="dataset directory to write")
    p.add_argument("--workers", type=int, default=2, metavar="N",
                   help="worker processes that parse and tokenize in parallel (default 2)")
    p.add_argument("--val-fraction", type=float, default=0.05, help="share of pieces held out for validation (0.05)")
    p.add_argument("--test-fraction", type=float, default=0.05, help="share of pieces held out for testing (0.05)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-cache", action="store_true", help="ignore and do not write DATA_DIR/.cache")
    p.add_argument("--commercial-ok", action="store_true",
                   help="leave out pieces whose licence is for non-commercial use (the Essen encodings) or "
                        "unknown, so a model trained on the result may be used commercially")
    p.add_argument("--allow-unknown-licence", action="store_true",
                   help="with --commercial-ok, keep pieces whose licence is unknown")
    p.add_argument("--tokenizer", metavar="MODEL_DIR",
                   help="use this model's tokenizer exactly (its folder or tokenizer.json), so that "
                        "`cadenza train --init MODEL_DIR` can fine-tune the model on these pieces")


def register_music21(sub) -> None:
    from cadenza.data.music import COLLECTIONS

    p = sub.add_parser(
        "music21", help="music dataset from the public-domain corpus bundled with music21 (offline)",
        description="Build a music dataset from the scores bundled inside the music21 package: Bach "
                    "chorales, Palestrina, Essen folk songs, O'Neill's, Ryan's Mammoth, Aird's Airs and the "
                    "other collections whose licence is known. Nothing is downloaded. Scores that fail to "
                    "parse are skipped and listed, never fatal. " + _OUTPUTS)
    p.add_argument("--collections", nargs="+", metavar="NAME",
                   help="collections to include (default: all of them): " + ", ".join(sorted(COLLECTIONS)))
    p.add_argument("--limit", type=int, metavar="N",
                   help="at most N pieces per collection (the first ones in file order), for quick builds")
    p.add_argument("--as-written", action="store_true",
                   help="keep repeat signs as notated instead of playing them (by default a tune is "
                        "written out as played: |: :|, first and second endings and D.C. expanded, so "
                        "the model sees its AABB form); the split is the same either way")
    _common(p)
    p.set_defaults(func=_music21)


def register_midi(sub) -> None:
    from cadenza.codecs.music import STYLES

    p = sub.add_parser(
        "midi", help="music dataset from your own folder of .mid files",
        description="Build a music dataset from every .mid / .midi file under DIR (recursively). "
                    "Unreadable files are skipped and listed. " + _OUTPUTS)
    p.add_argument("source", metavar="DIR", help="folder of MIDI files")
    p.add_argument("--style", default="other", choices=STYLES,
                   help="style token for these pieces (default: other)")
    p.add_argument("--licence", default="unknown (your own files)",
                   help="licence recorded for every piece in the manifest")
    p.add_argument("--composer", default="unknown", help="composer recorded for every piece in the manifest")
    _common(p)
    p.set_defaults(func=_midi)
