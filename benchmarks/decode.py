"""Decode benchmark: per-token time of the sparse KV cache vs dense attention with a full cache; the logic is ``cadenza.bench.decode`` (see --help)."""

import sys

from cadenza.bench.decode import main

if __name__ == "__main__":
    sys.exit(main())
