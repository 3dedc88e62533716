"""Thin lm-eval hooks (``!function vlm_utils.<name>``) for the vision-language tasks here.

All logic lives in :mod:`t2bench.tasks.t2vqa` (data: :mod:`t2bench.tasks.textimages`). lm-eval
calls ``custom_dataset`` functions with the task metadata and ``dataset_kwargs`` as keyword
arguments, so the loader accepts and ignores extra keywords.
"""

from __future__ import annotations

from t2bench.tasks import t2vqa


def load_t2vqa(**kwargs):
    return t2vqa.load_t2vqa(**kwargs)


def t2vqa_process_results(doc, results):
    return t2vqa.process_results(doc, results)
