"""Cadenza Studio benchmark: speed of the studio's answers, and what infilling's choice buys; the logic is ``cadenza.bench.studio`` (see --help)."""

import sys

from cadenza.bench.studio import main

if __name__ == "__main__":
    sys.exit(main())
