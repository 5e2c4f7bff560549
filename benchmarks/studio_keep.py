"""Does the studio keep the person's music, and does the stream's mood reach its tempo; the logic is ``cadenza.bench.studio_keep`` (see --help)."""

import sys

from cadenza.bench.studio_keep import main

if __name__ == "__main__":
    sys.exit(main())
