"""The source checkout this package runs from, where there is one (for what only a checkout
holds: the shipped ``models/``, ``benchmarks/results/``). Nothing here assumes one exists."""

from __future__ import annotations

from pathlib import Path


def checkout_root(marker: str, start=None) -> Path | None:
    """The nearest folder at or above ``start`` (default: this package) that holds both a
    ``marker`` folder and a ``pyproject.toml``, or None. An editable install finds the
    checkout (``src/cadenza`` -> checkout); so does an installed copy in a virtual
    environment inside it (``.venv/lib/python3.x/site-packages/cadenza`` -> checkout)."""
    here = Path(start) if start is not None else Path(__file__).resolve().parent
    for folder in (here, *here.parents):
        if (folder / marker).is_dir() and (folder / "pyproject.toml").is_file():
            return folder
    return None
