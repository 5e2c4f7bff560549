"""Harmony (issue 28): harmonize held-out chorale sopranos, against Bach's voices and a rule-based baseline; the logic is ``cadenza.bench.harmony`` (see --help)."""

import sys

from cadenza.bench.harmony import main

if __name__ == "__main__":
    sys.exit(main())
