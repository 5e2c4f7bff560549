"""`cadenza data images` and `cadenza data audio`: image and raw-audio datasets."""

from __future__ import annotations


def _report_skipped(skipped) -> None:
    if skipped:
        from cadenza.data.files import skipped_summary

        print(skipped_summary(skipped))


def _images(args) -> int:
    from cadenza.data.images import build_image_dataset

    r = build_image_dataset(args.source, args.out, size=args.size, val_fraction=args.val_fraction, seed=args.seed)
    print(f"wrote {r.out_dir}: {r.images} image(s) of {args.size} x {args.size} x 3 "
          f"({args.size * args.size * 3:,} tokens each): train {r.splits['train']}, val {r.splits['val']}")
    _report_skipped(r.skipped)
    return 0


def _audio(args) -> int:
    from cadenza.data.audio import build_audio_dataset

    r = build_audio_dataset(args.source, args.out, sample_rate=args.rate, val_fraction=args.val_fraction)
    sizes = ", ".join(f"{k} {n:,} samples ({n / r.sample_rate:.1f} s)" for k, n in r.splits.items())
    print(f"wrote {r.out_dir}: {r.files} WAV file(s) at {r.sample_rate} Hz mu-law: {sizes}")
    _report_skipped(r.skipped)
    return 0


def register_images(sub) -> None:
    p = sub.add_parser("images", help="image dataset from a folder of PNG/JPEG files",
                       description="Build an image dataset: every PNG/JPEG under DIR is centre-cropped, resized "
                                   "to SIZE x SIZE RGB and stored as raster-order channel tokens (one START token "
                                   "per image, vocab 257). Unreadable files are skipped and counted.")
    p.add_argument("source", metavar="DIR")
    p.add_argument("--size", type=int, default=32, help="width and height in pixels (default 32: 3,072 tokens)")
    p.add_argument("-o", "--out", required=True, metavar="DATA_DIR", help="dataset directory to write")
    p.add_argument("--val-fraction", type=float, default=0.1, help="share of images held out (default 0.1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the train/val shuffle (default 0)")
    p.set_defaults(func=_images)


def register_audio(sub) -> None:
    p = sub.add_parser("audio", help="raw-audio dataset from a folder of WAV files (8-bit mu-law)",
                       description="Build a raw-audio dataset: every .wav under DIR is mixed to mono, resampled "
                                   "to RATE and stored as 8-bit mu-law samples (vocab 256); the last part is held "
                                   "out. Unreadable files are skipped and counted.")
    p.add_argument("source", metavar="DIR")
    p.add_argument("--rate", type=int, choices=[8000, 16000], default=8000, help="sample rate (default 8000)")
    p.add_argument("-o", "--out", required=True, metavar="DATA_DIR", help="dataset directory to write")
    p.add_argument("--val-fraction", type=float, default=0.05, help="share of samples held out (default 0.05)")
    p.set_defaults(func=_audio)
