"""The `cadenza` command line: thin argument parsing over the library.

Every module in ``cadenza.commands`` defines ``register(subparsers)``, which adds its
subcommands and sets ``func`` (called with the parsed arguments, returns an exit code).
Errors a user can cause (``CadenzaError``) print one sentence and exit with code 2.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from cadenza import __version__
from cadenza.errors import CadenzaError


def build_parser() -> argparse.ArgumentParser:
    import cadenza.commands as commands

    parser = argparse.ArgumentParser(
        prog="cadenza",
        description="Cadenza: a Sparse Transformer for music that runs on your CPU.",
    )
    parser.add_argument("--version", action="version", version=f"cadenza {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"cadenza.commands.{info.name}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except CadenzaError as exc:
        print(f"cadenza: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cadenza: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
