"""Shared helpers for the training-engine tests: a tiny text dataset, tiny run options, subprocesses."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import torch

from cadenza.data.text import build_text_dataset
from cadenza.train import checkpoint as ckpt_io

WORDS = ("the cat sat on a mat and the dog ran to the red door while birds sang "
         "in old green trees by the quiet river under a warm evening sky").split()


def make_text_dataset(root: Path, n_words: int = 6000, seed: int = 0) -> Path:
    """A small, learnable English-like byte dataset (about 25 KB)."""
    rng = np.random.default_rng(seed)
    text = " ".join(WORDS[i] for i in rng.integers(0, len(WORDS), size=n_words)) + "\n"
    src = Path(root) / "corpus.txt"
    src.write_text(text)
    build_text_dataset(src, Path(root) / "data", val_fraction=0.1)
    return Path(root) / "data"


def tiny_options(data, out, **overrides) -> dict:
    opts = dict(data=str(data), out=str(out), preset="tiny", seq_len=32, batch_size=4, steps=10,
                lr=3e-3, warmup_steps=2, eval_every=5, eval_windows=4, save_every=5, keep_last=2,
                progress=False, tensorboard=False)
    opts.update(overrides)
    return opts


def cli_args(opts: dict) -> list[str]:
    """The same options as `cadenza train` arguments."""
    args = ["train"]
    for key, value in opts.items():
        flag = "--" + key.replace("_", "-")
        if key == "progress":
            if not value:
                args.append("--no-progress")
        elif key == "tensorboard":
            if not value:
                args.append("--no-tensorboard")
        elif value is True:
            args.append(flag)
        elif value is False or value is None:
            continue
        else:
            args += [flag, str(value)]
    return args


def python_env() -> dict:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def cadenza_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "cadenza", *args]


def latest_params(run_dir) -> dict:
    path, state = ckpt_io.latest_checkpoint(run_dir)
    assert path is not None, f"no loadable checkpoint in {run_dir}"
    return state["model"]


def assert_same_params(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"parameter {k} differs"
