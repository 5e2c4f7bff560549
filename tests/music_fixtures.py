"""Shared helpers for the music tests: a tiny music model trained for a few seconds on a few
Bach chorales (once per test process), and small MIDI files to feed it."""

from __future__ import annotations

import atexit
import functools
import json
import shutil
import tempfile
from pathlib import Path

import torch

CHORALES = ("bach/bwv2.6.mxl", "bach/bwv20.11.mxl", "bach/bwv20.7.mxl", "bach/bwv226.2.mxl",
            "bach/bwv227.1.mxl", "bach/bwv66.6.mxl")
_ROOT = Path(tempfile.mkdtemp(prefix="cadenza-music-tests-"))
atexit.register(shutil.rmtree, _ROOT, ignore_errors=True)


@functools.lru_cache(maxsize=None)
def corpus_scores() -> tuple:
    """A few real chorales (four voices) as symusic scores."""
    from music21 import converter

    from cadenza.data.music import m21_to_score, music21_corpus_dir

    root = music21_corpus_dir()
    return tuple(m21_to_score(converter.parse(str(root / rel), forceSource=True))[0] for rel in CHORALES)


@functools.lru_cache(maxsize=None)
def codec():
    from cadenza.codecs.music import MusicCodec

    return MusicCodec()


@functools.lru_cache(maxsize=None)
def tiny_model_dir() -> Path:
    """Train a tiny music model for a few seconds on the chorales (with the training engine)
    and return its model directory (weights, config, tokenizer, card, metrics)."""
    import numpy as np

    from cadenza.data.format import write_dataset
    from cadenza.train import train

    c = codec()
    seqs = [np.asarray(c.encode(s, style="bach"), dtype=np.int64) for s in corpus_scores()]
    data = _ROOT / "data"
    write_dataset(data, {"train": np.concatenate(seqs[:-1]), "val": seqs[-1]}, c.vocab_size, modality="music")
    c.save(data / "tokenizer.json")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = train(data=str(data), out=str(_ROOT / "run"), preset="tiny",
                       model_overrides={"max_len": 512, "stride": 16}, seq_len=256, batch_size=8, steps=40,
                       lr=3e-3, warmup_steps=4, eval_every=0, eval_windows=4, save_every=0, keep_last=1,
                       progress=False, tensorboard=False)
    finally:
        torch.set_num_threads(threads)
    model_dir = _ROOT / "models" / "tiny-chorales"
    shutil.copytree(_ROOT / "run" / "model", model_dir)
    c.save(model_dir / "tokenizer.json")
    (model_dir / "MODEL_CARD.md").write_text("# Tiny chorale model (test fixture)\n\nTrained for 40 steps.\n")
    (model_dir / "metrics.json").write_text(json.dumps({"held_out": {"bits_per_token": result.best_eval_loss}}))
    return model_dir


def tiny_model():
    from cadenza.music.load import load_model

    return load_model(tiny_model_dir())


def chorale_voices(n_bars: int, voices):
    """Voices of a chorale (bwv66.6), the first n_bars bars: ``voices`` lists (part index,
    track name) pairs, each written as one track, program 0."""
    import symusic

    s = corpus_scores()[-1]   # bwv66.6
    bar = 4 * s.ticks_per_quarter
    out = symusic.Score(s.ticks_per_quarter)
    for t in s.time_signatures:
        out.time_signatures.append(t)
    for t in s.tempos:
        out.tempos.append(t)
    for i, name in voices:
        tr = symusic.Track(name=name, program=0)
        for n in s.tracks[i].notes:
            if n.time < n_bars * bar:
                tr.notes.append(n)
        out.tracks.append(tr)
    return out


def melody_score(n_bars: int = 4):
    """The soprano line of a chorale (one track, program 0), the first n_bars bars."""
    return chorale_voices(n_bars, [(0, "melody")])


def write_midi_file(score, path) -> Path:
    from cadenza.codecs.music import write_midi

    return write_midi(score, path)


def excerpt_score(n_bars: int = 3):
    """The first n_bars bars of a four-voice chorale."""
    s = corpus_scores()[-1].copy()
    end = n_bars * 4 * s.ticks_per_quarter
    return s.clip(0, end, clip_end=False)


def write_chorale_corpus(d: Path) -> tuple[Path, list]:
    """A tiny music corpus in ``d``: five chorales to train on, the sixth held out (val).
    Returns (d, the six token sequences)."""
    import numpy as np

    from cadenza.data.format import write_dataset

    c = codec()
    seqs = [np.asarray(c.encode(s, style="bach"), dtype=np.int64) for s in corpus_scores()]
    write_dataset(d, {"train": np.concatenate(seqs[:-1]), "val": seqs[-1]}, c.vocab_size, modality="music")
    c.save(d / "tokenizer.json")
    return d, seqs
