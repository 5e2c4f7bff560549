"""Controls followed (issue 10): does a music model keep the key, energy and valence it is given?; the logic is ``cadenza.bench.music_controls`` (see --help)."""

import sys

from cadenza.bench.music_controls import main

if __name__ == "__main__":
    sys.exit(main())
