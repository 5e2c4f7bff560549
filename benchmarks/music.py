"""Music speed benchmark: compose 60 seconds of music, MIDI file included, on the CPU; the logic is ``cadenza.bench.music`` (see --help)."""

import sys

from cadenza.bench.music import main

if __name__ == "__main__":
    sys.exit(main())
