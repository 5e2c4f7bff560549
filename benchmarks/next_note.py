"""Next pitch on melodies: the music model against an IDyOM-style baseline (issue 10); the logic is ``cadenza.bench.next_note`` (see --help)."""

import sys

from cadenza.bench.next_note import main

if __name__ == "__main__":
    sys.exit(main())
