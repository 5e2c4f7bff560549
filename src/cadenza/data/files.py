"""Finding the input files of a corpus builder: every file with given extensions under a folder."""

from __future__ import annotations

from pathlib import Path

from cadenza.errors import DataError


def collect_files(source, extensions, what: str) -> list[Path]:
    """Sorted files under ``source`` (a folder, or one file) whose suffix is in ``extensions``
    (case-insensitive); hidden files and folders are skipped."""
    source = Path(source)
    if source.is_file():
        return [source]
    if not source.exists():
        raise DataError(f"{source} does not exist; give a folder of {what} files")
    if not source.is_dir():
        raise DataError(f"{source} is not a folder; give a folder of {what} files")
    files = []
    for p in sorted(source.rglob("*")):
        rel = p.relative_to(source)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if p.suffix.lower() in extensions and p.is_file():
            files.append(p)
    if not files:
        raise DataError(f"{source} has no {what} files ({', '.join(extensions)}); nothing to build")
    return files


def read_each(source, extensions, what: str, read) -> tuple[list, list[tuple[Path, str]]]:
    """(``read(path)`` for every readable file, [(path, why)] for the files ``read`` refused with a
    DataError); DataError when none could be read."""
    files = collect_files(source, extensions, what)
    done, skipped = [], []
    for path in files:
        try:
            done.append(read(path))
        except DataError as exc:
            skipped.append((path, str(exc)))
    if not done:
        raise DataError(f"none of the {len(files)} {what} file(s) under {source} could be read "
                        f"(first: {skipped[0][1]}); nothing to build")
    return done, skipped


def skipped_summary(skipped: list[tuple[Path, str]], limit: int = 3) -> str:
    """'N file(s) skipped: a (why); b (why) and K more'."""
    shown = "; ".join(f"{p} ({why})" for p, why in skipped[:limit])
    more = f" and {len(skipped) - limit} more" if len(skipped) > limit else ""
    return f"{len(skipped)} file(s) skipped: {shown}{more}"
