"""Training throughput: tokens/s of forward + backward + AdamW step, sparse vs dense attention; the logic is ``cadenza.bench.train_throughput`` (see --help)."""

import sys

from cadenza.bench.train_throughput import main

if __name__ == "__main__":
    sys.exit(main())
