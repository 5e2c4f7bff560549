"""What every music command shares: the options of ``--model``, sampling, output and threads,
and loading the model (used by ``commands.write`` and ``commands.predict``)."""

from __future__ import annotations

from cadenza.bounds import TEMPERATURE, TOP_P
from cadenza.errors import ConfigError

MODEL_HELP = ("music model directory (model.safetensors, config.json, tokenizer.json); default: the model "
              "installed in the repository's models/ folder (see `cadenza models`)")


def threads(n):
    """One thread by default: decoding one piece is a chain of small steps, and on a shared
    2-core CPU a second thread mostly waits (measured: 1.05 s vs 13.6 s for the same piece)."""
    import torch

    n = 1 if n is None else n
    if n < 1:
        raise ConfigError(f"--threads must be at least 1, not {n}")
    torch.set_num_threads(n)


def progress(args) -> bool:
    return not getattr(args, "no_progress", False)


def load(args):
    """The model; int8 decoding weights unless --exact (predict_next itself always decodes exactly)."""
    from cadenza.music.load import load_model

    return load_model(args.model, decode_weights="float32" if getattr(args, "exact", False) else "int8")


def options(p, output: bool = True) -> None:
    p.add_argument("--model", metavar="DIR", help=MODEL_HELP)
    if output:
        p.add_argument("--seed", type=int, help="random seed: the same seed (and model and options) gives the same "
                                                "piece; default: a fresh one, printed and recorded in the files")
        p.add_argument("--temperature", type=float, default=1.0, metavar="T",
                       help="sampling temperature: lower is safer and more repetitive, higher is more adventurous; "
                            f"0 always takes the likeliest token; at most {TEMPERATURE.hi:g} (default 1.0)")
        p.add_argument("--top-p", type=float, default=0.95, metavar="P",
                       help="nucleus sampling: sample only from the likeliest tokens holding this much probability, "
                            f"above {TOP_P.lo} and at most {TOP_P.hi} (default 0.95; 1 turns it off)")
        p.add_argument("--top-k", type=int, metavar="K", help="sample only from the K likeliest tokens (default: off)")
        p.add_argument("-o", "--output", required=True, metavar="OUT.mid",
                       help="the MIDI file to write; OUT.wav, OUT.png and OUT.json go next to it")
        p.add_argument("--no-audio", action="store_true", help="write only the MIDI file (no WAV, PNG or JSON)")
        p.add_argument("--soundfont", metavar="SF2", help="General MIDI SoundFont for the WAV (default: TimGM6mb "
                                                          "from pretty_midi, or $CADENZA_SOUNDFONT)")
        p.add_argument("--no-progress", action="store_true", help="do not show a progress bar")
        p.add_argument("--exact", action="store_true",
                       help="decode with the model's float32 weights (default: int8 weights, about 1.5x faster per "
                            "token, with very slightly different probabilities)")
    p.add_argument("--threads", type=int, metavar="N",
                   help="CPU threads for the model (default 1, the fastest for one piece at a time)")
    if output:
        p.add_argument("--max-copy", type=int, metavar="N",
                       help="never repeat more than N consecutive notes (pitch intervals, any transposition) of a "
                            "training piece: a pitch that would is not sampled. Default 16 when the model's "
                            "training corpus or the notes file it ships is there (the shipped model: always; "
                            "unguarded, its output never reached 16 in 200 pieces, so the guard only changes "
                            "true long copies), else off; 0 turns it off. The first use builds the corpus index "
                            "of `cadenza check` into the user's cache (seconds, once)")
        p.add_argument("--corpus", metavar="DATA_DIR", help="the training corpus (folder or notes file) for "
                                                            "--max-copy (default: the model's)")
