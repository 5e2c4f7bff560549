"""`cadenza data ...`: build token datasets (one subcommand per corpus builder).

Each builder adds itself in :data:`BUILDERS` (a function taking the ``data`` subparsers);
all of them write the shared format of :mod:`cadenza.data.format`.
"""

from __future__ import annotations


def _text(args) -> int:
    from cadenza.data.text import build_text_dataset

    result = build_text_dataset(args.source, args.out, val_fraction=args.val_fraction)
    sizes = ", ".join(f"{name} {n:,} bytes" for name, n in result.splits.items())
    print(f"wrote {result.out_dir}: {len(result.files)} file(s), {sizes}")
    if result.skipped:
        shown = ", ".join(str(p) for p in result.skipped[:5])
        more = f" and {len(result.skipped) - 5} more" if len(result.skipped) > 5 else ""
        print(f"skipped {len(result.skipped)} binary file(s): {shown}{more}")
    return 0


def register_text(sub) -> None:
    p = sub.add_parser("text", help="byte-level text dataset from a file or a folder of files",
                       description="Build a byte-level (vocab 256) dataset: every file under FILE_OR_DIR "
                                   "(sorted, .gz decompressed, binary files skipped) is joined, and the "
                                   "last part is held out as the 'val' split.")
    p.add_argument("source", metavar="FILE_OR_DIR")
    p.add_argument("--out", required=True, metavar="DATA_DIR", help="dataset directory to write")
    p.add_argument("--val-fraction", type=float, default=0.05,
                   help="fraction of the bytes held out for evaluation (default 0.05)")
    p.set_defaults(func=_text)


from cadenza.commands.data_media import register_audio, register_images  # noqa: E402
from cadenza.commands.data_music import register_midi, register_music21  # noqa: E402

BUILDERS = [register_text, register_music21, register_midi, register_images, register_audio]


def register(subparsers) -> None:
    parser = subparsers.add_parser("data", help="build token datasets for training",
                                   description="Build a token dataset (DATA_DIR with *.bin + meta.json).")
    sub = parser.add_subparsers(dest="data_command", metavar="SOURCE")
    for add in BUILDERS:
        add(sub)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])
