"""Mood decides the mode (issue 22): sad minor, happy major, valence switches heard; the logic is ``cadenza.bench.music_mood`` (see --help)."""

import sys

from cadenza.bench.music_mood import main

if __name__ == "__main__":
    sys.exit(main())
