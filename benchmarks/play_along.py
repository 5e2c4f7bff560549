"""Play along (issue 26): the live engine on held-out melodies; the logic is ``cadenza.bench.play_along`` (see --help)."""

import sys

from cadenza.bench.play_along import main

if __name__ == "__main__":
    sys.exit(main())
