"""Importing this module registers every first-pass strategy with the dispatch registry."""

from t2bench.dispatch import (
    fewshot,  # noqa: F401  cem
    prompted,  # noqa: F401  prompt, classifier, label
    router,  # noqa: F401  router (embedding classifier)
)
