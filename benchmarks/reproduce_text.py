"""Paper-style text reproduction (Child et al. 2019, Table 2) at this machine's scale; the logic is ``cadenza.bench.reproduce_text`` (see --help)."""

import sys

from cadenza.bench.reproduce_text import main

if __name__ == "__main__":
    sys.exit(main())
