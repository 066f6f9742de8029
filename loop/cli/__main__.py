"""`python -m loop.cli`: the same entry point as the `pvar-loop` console script."""

import sys

from loop.cli.app import main

sys.exit(main())
