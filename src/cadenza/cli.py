"""The `cadenza` command line: thin argument parsing over the library.

A module in ``cadenza.commands`` that defines ``register(subparsers)`` adds its top-level
command(s) and sets ``func`` (called with the parsed arguments, returns an exit code); a
module without one holds the parts of another command (``data_music`` and ``data_media`` add
the builders of ``cadenza data``) and is left to it.

Failures a user can cause print one line, ``cadenza: error: <sentence>``, and exit with code 2:
``CadenzaError`` (bad input, settings, model or data files) and ``OSError`` (a file without
read permission, a missing or read-only folder, a full disk, the ``ulimit -f`` file-size
limit, a folder where a file is expected), named by path with what to do. Anything else is a
bug: its traceback is shown, with one line asking to report it (exit code 1).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import signal
import sys
import traceback

from cadenza._version import __version__
from cadenza.errors import CadenzaError

FIRST = ("write", "predict", "models")   # the music commands lead `cadenza --help`; the rest by name
REPORT_HINT = ("cadenza: this is a bug in Cadenza {version}, not something you did; please report it with the "
               "command you ran and the traceback above")


def build_parser() -> argparse.ArgumentParser:
    import cadenza.commands as commands

    parser = argparse.ArgumentParser(
        prog="cadenza",
        description="Cadenza: a Sparse Transformer for music that runs on your CPU.",
    )
    parser.add_argument("--version", action="version", version=f"cadenza {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=_help_order):
        register = getattr(importlib.import_module(f"cadenza.commands.{info.name}"), "register", None)
        if register is not None:
            register(sub)
    return parser


def _help_order(module) -> tuple:
    return (FIRST.index(module.name) if module.name in FIRST else len(FIRST), module.name)


def _ignore_file_size_signal() -> None:
    """Past ``ulimit -f`` the kernel sends SIGXFSZ, which kills the process by default (and
    can leave a half file behind); ignored, the write fails with EFBIG instead, which the
    CLI reports and cleans up after like any other write error. The ``python`` executable
    already ignores it at start-up; this keeps it so where Cadenza runs embedded or after
    something restored the default."""
    if hasattr(signal, "SIGXFSZ"):
        try:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        except (ValueError, OSError):   # not the main thread: leave it as it is
            pass


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def main(argv: list[str] | None = None) -> int:
    _ignore_file_size_signal()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except CadenzaError as exc:
        print(f"cadenza: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:
        from cadenza.io import os_error_sentence

        print(f"cadenza: error: {_one_line(os_error_sentence(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cadenza: interrupted", file=sys.stderr)
        return 130
    except Exception:
        traceback.print_exc()
        print(REPORT_HINT.format(version=__version__), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
