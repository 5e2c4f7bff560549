"""How often the model copies its training corpus: composed pieces checked against it; the logic is ``cadenza.bench.originality`` (see --help)."""

import sys

from cadenza.bench.originality import main

if __name__ == "__main__":
    sys.exit(main())
