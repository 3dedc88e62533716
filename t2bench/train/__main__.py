"""``python -m t2bench.train ...`` (what ``accelerate launch -m t2bench.train`` runs)."""

import sys

from t2bench.cli import main

sys.exit(main(["train", *sys.argv[1:]]))
