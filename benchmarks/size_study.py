"""Model-size study at equal wall-clock time: held-out bits/token against training time; the logic is ``cadenza.bench.size_study`` (see --help)."""

import sys

from cadenza.bench.size_study import main

if __name__ == "__main__":
    sys.exit(main())
