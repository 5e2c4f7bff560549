"""A raw-audio model trained at n = 65,536 on this CPU, scored against n-gram baselines; the logic is ``cadenza.bench.audio_long`` (see --help)."""

import sys

from cadenza.bench.audio_long import main

if __name__ == "__main__":
    sys.exit(main())
