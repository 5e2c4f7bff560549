"""`cadenza render IN.mid -o OUT.wav [--png OUT.png]`: hear and see a MIDI file, offline."""

from __future__ import annotations

from pathlib import Path

from cadenza.errors import ConfigError


def _render(args) -> int:
    from cadenza.codecs.music import load_midi
    from cadenza.music.render import render_piano_roll, render_wav

    outputs = list(args.output or [])
    if args.png:
        outputs.append(args.png)
    if not outputs:
        raise ConfigError("name at least one output: -o OUT.wav and/or -o OUT.png (or --png OUT.png)")
    for out in outputs:
        if Path(out).suffix.lower() not in (".wav", ".png"):
            raise ConfigError(f"{out}: the output must end in .wav (audio) or .png (piano roll)")
        if Path(out).resolve() == Path(args.input).resolve():
            raise ConfigError(f"{out} is the input file; choose another output name")
    score = load_midi(args.input)  # validates once: missing, empty, corrupt, not MIDI, no notes
    for out in outputs:
        if Path(out).suffix.lower() == ".wav":
            render_wav(score, out, soundfont=args.soundfont, sample_rate=args.sample_rate)
        else:
            render_piano_roll(score, out, title=args.title or Path(args.input).name)
        print(f"wrote {out}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "render", help="render a MIDI file to audio (WAV) and/or a piano-roll picture (PNG)",
        description="Render IN.mid offline. A .wav output is synthesized with a General MIDI SoundFont "
                    "(TimGM6mb, shipped inside pretty_midi; override with --soundfont or $CADENZA_SOUNDFONT) "
                    "as 16-bit stereo; a .png output is a piano roll (time across, pitch up, one colour per "
                    "instrument). Files are written atomically: an existing output is only replaced by a "
                    "complete new file. A missing, empty, corrupt or non-MIDI input, or one without notes, "
                    "is refused with one sentence and exit code 2.")
    p.add_argument("input", metavar="IN.mid", help="MIDI file to render")
    p.add_argument("-o", "--output", action="append", metavar="OUT",
                   help="output file, .wav or .png; repeat for both")
    p.add_argument("--png", metavar="OUT.png", help="also write a piano roll here")
    p.add_argument("--soundfont", metavar="SF2", help="General MIDI SoundFont (.sf2/.sf3) to use")
    p.add_argument("--sample-rate", type=int, default=44100, metavar="HZ", help="audio sample rate (default 44100)")
    p.add_argument("--title", help="title of the piano roll (default: the input's file name)")
    p.set_defaults(func=_render)
