"""Recipe study (issue 22): training recipes compared at equal CPU time on the same held-out pieces; the logic is ``cadenza.bench.recipe_study`` (see --help)."""

import sys

from cadenza.bench.recipe_study import main

if __name__ == "__main__":
    sys.exit(main())
