"""Where benchmarks read and write by default: the checkout's ``benchmarks/results/`` (and
``runs/``, ``benchmarks/configs/``), the checkout found by walking up from this package
(``cadenza.checkout``), else the current directory."""

from __future__ import annotations

from pathlib import Path

from cadenza.checkout import checkout_root

ROOT = checkout_root("benchmarks") or Path.cwd()
RESULTS = ROOT / "benchmarks" / "results"
