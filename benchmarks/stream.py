"""Endless-soundtrack benchmark: a real `cadenza serve` process and WebSocket clients on loopback; the logic is ``cadenza.bench.stream`` (see --help)."""

import sys

from cadenza.bench.stream import main

if __name__ == "__main__":
    sys.exit(main())
