"""Form (issue 22): bar and phrase repeats and tonic endings, composed vs held-out; the logic is ``cadenza.bench.music_form`` (see --help)."""

import sys

from cadenza.bench.music_form import main

if __name__ == "__main__":
    sys.exit(main())
