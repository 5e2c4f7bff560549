"""Strided attention at 1 and 2 threads, part by part, by wall and per-thread CPU time; the logic is ``cadenza.bench.thread_profile`` (see --help)."""

import sys

from cadenza.bench.thread_profile import main

if __name__ == "__main__":
    sys.exit(main())
