"""The paper's long-sequence claims at this machine's scale (Child et al. 2019, sections 7.2-7.4); the logic is ``cadenza.bench.long_sequences`` (see --help)."""

import sys

from cadenza.bench.long_sequences import main

if __name__ == "__main__":
    sys.exit(main())
