"""`cadenza render IN.mid -o OUT.wav [--png OUT.png]`: hear and see a MIDI file, offline."""

from __future__ import annotations

from pathlib import Path

from cadenza.errors import ConfigError
from cadenza.music.preflight import MAX_INPUT_NOTES


def _render(args) -> int:
    from cadenza.io import FileTransaction
    from cadenza.music.preflight import check_outputs, read_input, score_seconds
    from cadenza.codecs.audio import write_wav
    from cadenza.render import render_piano_roll, synthesize

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
    if len({Path(o).resolve() for o in outputs}) != len(outputs):
        raise ConfigError("the same output is named twice; name each output once")
    if not 8000 <= args.sample_rate <= 192000:
        raise ConfigError(f"sample rate must be between 8000 and 192000 Hz, not {args.sample_rate}")
    score = read_input(args.input)  # validates once: missing, unreadable, empty, corrupt, not MIDI, no notes, too big
    wavs = [o for o in outputs if Path(o).suffix.lower() == ".wav"]
    check_outputs(outputs, audio_seconds=score_seconds(score), soundfont=args.soundfont, audio=bool(wavs),
                  too_long_hint="render only the piano roll (.png), or a shorter part of the piece")
    # everything is rendered into temporary files first; all outputs appear together or none does
    with FileTransaction() as txn:
        audio = synthesize(score, soundfont=args.soundfont, sample_rate=args.sample_rate) if wavs else None
        for out in outputs:
            if Path(out).suffix.lower() == ".wav":
                txn.write(out, lambda tmp: write_wav(tmp, audio, args.sample_rate))
            else:
                txn.write(out, lambda tmp: render_piano_roll(score, tmp, title=args.title or Path(args.input).name))
    for out in outputs:
        print(f"wrote {out}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "render", help="render a MIDI file to audio (WAV) and/or a piano-roll picture (PNG)",
        description="Render IN.mid offline. A .wav output is synthesized with a General MIDI SoundFont "
                    "(TimGM6mb, shipped inside pretty_midi; override with --soundfont or $CADENZA_SOUNDFONT) "
                    "as 16-bit stereo; a .png output is a piano roll (time across, pitch up, one colour per "
                    "instrument). The outputs are written as one transaction: each is prepared as a temporary "
                    "file, then all are renamed into place, so an existing output is only replaced by a complete "
                    "new file and nothing changes if anything fails. A missing, unreadable, empty, corrupt or "
                    f"non-MIDI input, one without notes or with more than {MAX_INPUT_NOTES:,}, a SoundFont that is "
                    "not one, "
                    "an output folder that does not exist or cannot be written, or a piece longer than the "
                    "60-minute audio limit is refused with one sentence and exit code 2, before any rendering.")
    p.add_argument("input", metavar="IN.mid", help="MIDI file to render")
    p.add_argument("-o", "--output", action="append", metavar="OUT",
                   help="output file, .wav or .png; repeat for both")
    p.add_argument("--png", metavar="OUT.png", help="also write a piano roll here")
    p.add_argument("--soundfont", metavar="SF2", help="General MIDI SoundFont (.sf2/.sf3) to use")
    p.add_argument("--sample-rate", type=int, default=44100, metavar="HZ", help="audio sample rate (default 44100)")
    p.add_argument("--title", help="title of the piano roll (default: the input's file name)")
    p.set_defaults(func=_render)
