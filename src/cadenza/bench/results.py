"""Writing benchmark results: where they go by default, and as standard JSON.

The default folder is the checkout's ``benchmarks/results/`` (and ``runs/``,
``benchmarks/configs/`` beside it), the checkout found by walking up from this package
(``cadenza.checkout``), else the current directory.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

from cadenza.checkout import checkout_root
from cadenza.io import write_text_atomic

ROOT = checkout_root("benchmarks") or Path.cwd()
RESULTS = ROOT / "benchmarks" / "results"


def finite(x):
    """``x`` made standard JSON: NaN and infinities as null, numpy numbers and arrays as plain
    numbers and lists, in dicts, lists and tuples at any depth."""
    import numpy as np

    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [finite(v) for v in x]
    if isinstance(x, np.ndarray):
        return finite(x.tolist())
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.floating):
        return finite(float(x))
    return x


def run_header(benchmark: str) -> dict:
    """The first entries of a result file: the benchmark, its command line, the versions
    and the host."""
    import platform
    import sys

    import torch

    from cadenza import __version__

    return {"benchmark": benchmark, "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
            "cadenza_version": __version__, "torch": torch.__version__, "host": platform.node(),
            "cpu_count": os.cpu_count()}


def write_json_and_plot(out, stem: str, payload: dict, draw) -> tuple[str, str]:
    """``OUT/STEM.json`` (``payload``, indented) and ``OUT/STEM.png`` (``draw(png_path)``);
    their paths."""
    os.makedirs(out, exist_ok=True)
    json_path = os.path.join(out, f"{stem}.json")
    png_path = os.path.join(out, f"{stem}.png")
    write_text_atomic(json_path, json.dumps(payload, indent=2) + "\n")
    draw(png_path)
    return json_path, png_path


def missing_test_split(data) -> str | None:
    """The one-line error for a music dataset folder ``data`` without a test split (None when
    it has one): the held-out benchmarks read it."""
    if Path(data, "test.bin").exists():
        return None
    return f"{data} has no test split; build it with `cadenza data music21 --out {data}`"


def exit_code(run, *args) -> int:
    """``run(*args)``; a ``CadenzaError`` becomes one line on stderr and exit code 2, as in the CLI."""
    from cadenza.errors import CadenzaError

    try:
        return run(*args)
    except CadenzaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
