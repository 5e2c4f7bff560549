"""`cadenza generate`: images and raw audio from an image or audio model (see cadenza.media)."""

from __future__ import annotations

from pathlib import Path


def _check_out(out: Path, suffix: str) -> None:
    from cadenza.errors import ConfigError
    from cadenza.io import check_writable_folder

    if out.suffix.lower() != suffix:
        raise ConfigError(f"-o {out}: this model writes a {suffix} file; name it {out.with_suffix(suffix).name}")
    if out.is_dir():
        raise IsADirectoryError(21, "Is a directory", str(out))
    check_writable_folder(out.parent)


def _run(args) -> int:
    from cadenza.errors import ConfigError
    from cadenza.io import FileTransaction
    from cadenza.media import complete_image, continue_audio, load_media_model, read_prime, sample_images

    out = Path(args.out)
    mm = load_media_model(args.model)
    if mm.kind == "image":
        if args.prime is not None:
            raise ConfigError(f"{args.model} is an image model; --prime is for audio models")
        _check_out(out, ".png")
        from cadenza.codecs.image import tile, write_png

        if args.complete is not None:
            source = mm.codec.load_file(args.complete)
            images = complete_image(mm, source, args.n, args.seed, args.temperature, args.top_p)
            images = [source] + images
            what = f"the original and {args.n} completion(s) of its bottom half"
        else:
            images = sample_images(mm, args.n, args.seed, args.temperature, args.top_p)
            what = f"{args.n} sampled image(s)"
        grid = tile(images, columns=args.columns, scale=args.scale)
        with FileTransaction() as txn:
            txn.write(out, lambda tmp: write_png(grid, tmp))
        print(f"wrote {out}: {what}, {mm.codec.height} x {mm.codec.width} each")
        return 0
    if args.complete is not None:
        raise ConfigError(f"{args.model} is an audio model; --complete is for image models")
    _check_out(out, ".wav")
    from cadenza.codecs.audio import write_wav

    prime = read_prime(mm, args.prime) if args.prime is not None else None
    audio = continue_audio(mm, prime, args.seconds, args.seed, args.temperature, args.top_p)
    with FileTransaction() as txn:
        txn.write(out, lambda tmp: write_wav(tmp, audio, mm.codec.sample_rate))
    kept = 0 if prime is None else len(prime) / mm.codec.sample_rate
    print(f"wrote {out}: {kept:.2f} s of prime + {args.seconds:g} s generated at {mm.codec.sample_rate} Hz")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "generate", help="sample images or raw audio from an image/audio model",
        description="Sample from a model trained on `cadenza data images` or `cadenza data audio` data. Image "
                    "models: --n N writes a grid of N samples; --complete IMG keeps the top half of IMG and "
                    "samples the bottom half (the grid shows the original first). Audio models: --prime CLIP.wav "
                    "--seconds S writes the clip followed by S seconds of continuation.")
    p.add_argument("--model", required=True, metavar="MODEL_DIR")
    p.add_argument("-o", "--out", required=True, metavar="OUT.png|OUT.wav")
    p.add_argument("--n", type=int, default=16, help="images to sample, or completions with --complete (default 16)")
    p.add_argument("--complete", metavar="IMG", help="an image whose bottom half to complete")
    p.add_argument("--prime", metavar="CLIP.wav", help="audio to continue")
    p.add_argument("--seconds", type=float, default=4.0, help="seconds of audio to generate (default 4)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float)
    p.add_argument("--columns", type=int, help="images per grid row (default about sqrt(n))")
    p.add_argument("--scale", type=int, default=2, help="pixel size in the grid (default 2)")
    p.set_defaults(func=_run)
