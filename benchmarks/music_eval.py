"""Held-out evaluation of music models (issue 6): one table for the model card and README; the logic is ``cadenza.bench.music_eval`` (see --help)."""

import sys

from cadenza.bench.music_eval import main

if __name__ == "__main__":
    sys.exit(main())
