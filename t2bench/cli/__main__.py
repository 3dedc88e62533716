"""``python -m t2bench.cli ...``: the same as the ``t2bench`` command."""

import sys

from t2bench.cli import main

sys.exit(main())
