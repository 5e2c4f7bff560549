"""Fused decode benchmark: the C++ one-token step vs the Python step, on the shipped music model; the logic is ``cadenza.bench.decode_fused`` (see --help)."""

import sys

from cadenza.bench.decode_fused import main

if __name__ == "__main__":
    sys.exit(main())
