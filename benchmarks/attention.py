"""Attention benchmark; same as `cadenza bench attention` (see --help)."""

import sys

from cadenza.bench.attention import main

if __name__ == "__main__":
    sys.exit(main())
