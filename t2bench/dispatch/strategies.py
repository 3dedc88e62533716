"""Importing this module registers every first-pass strategy with the dispatch registry."""

from t2bench.dispatch import prompted  # noqa: F401  prompt, classifier, label
