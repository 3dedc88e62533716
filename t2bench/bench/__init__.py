"""Benchmarks: ratios against a baseline measured in the same run (never timed unit tests)."""

from pathlib import Path

from t2bench.core.io import new_record
from t2bench.core.provenance import provenance


def write_with_provenance(out, stem: str, rec: dict):
    """Write a bench record whose ``provenance_fields`` (the caller's model fingerprint, split,
    item ids, seed, wall time) become its ``provenance`` (plus commit, machine and UTC time)
    as a new ``<stem>-<UTC stamp>.json`` under ``out``; returns the path."""
    rec["provenance"] = provenance(**rec.pop("provenance_fields"))
    return new_record(Path(out), stem, rec)
